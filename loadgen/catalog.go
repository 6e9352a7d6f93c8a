package loadgen

// Price is what a model costs in USD per million tokens. Input covers the
// uncached part of the prompt; Cached the part served from the prompt cache.
type Price struct {
	Input, Output, Cached float64
}

// model describes one upstream model closely enough to produce believable
// latencies, token counts and costs.
type model struct {
	name  string
	price Price
	// weight is the model's popularity among its provider's models.
	weight    float64
	embedding bool
	// ttftMS is the median time to the first token; for embeddings, the
	// median time of the whole call.
	ttftMS float64
	// tokensPerSec is the median generation speed.
	tokensPerSec float64
	// outputMedian is the median completion length; reasoning models write
	// far more because their hidden reasoning is billed as output.
	outputMedian float64
}

// upstreamError is one way a request fails, as the gateway logs it.
type upstreamError struct {
	status  int
	errType string
	message string
	// medianMS is the failure's typical latency; a timeout's is the bound.
	medianMS float64
}

// provider is an upstream LLM API with its own reliability profile.
type provider struct {
	name string
	// nativeEndpoint is the provider-specific gateway route; the rest of the
	// traffic uses the OpenAI-compatible one.
	nativeEndpoint string
	accounts       []string
	// weight is the provider's share of tenants' attention.
	weight float64
	// Baseline failure rates; incidents raise them.
	rateLimited, serverError, timeout float64
	serverErrors                      []upstreamError
	rateLimits                        []upstreamError
	models                            []model
}

const (
	chatCompletions = "/v1/chat/completions"
	embeddings      = "/v1/embeddings"
	// timeoutMS is the gateway's upstream timeout: a timed-out request is
	// logged with this latency, and no successful request takes longer.
	timeoutMS = 120_000.0
)

var commonServerErrors = []upstreamError{
	{500, "upstream_error", "The server had an error while processing your request. Sorry about that!", 900},
	{502, "upstream_error", "upstream connect error or disconnect/reset before headers. reset reason: connection termination", 2500},
	{503, "upstream_error", "The engine is currently overloaded, please try again later.", 350},
}

// gatewayTimeout is logged when the upstream does not finish in time.
var gatewayTimeout = upstreamError{504, "timeout", "upstream request timed out after 120s", timeoutMS}

var clientErrors = []upstreamError{
	{400, "invalid_request", "This model's maximum context length is exceeded. Please reduce the length of the messages.", 45},
	{400, "invalid_request", "Invalid value for 'messages': the last message must have role 'user'.", 30},
	{401, "authentication_error", "Incorrect API key provided for the upstream account.", 25},
}

// Client error rates do not depend on the provider: they are the tenants'
// mistakes.
const (
	rateBadRequest   = 0.007
	rateUnauthorized = 0.0015
)

func rateLimit(message string) []upstreamError {
	return []upstreamError{{429, "rate_limited", message, 40}}
}

func chat(name string, price Price, weight, ttftMS, tokensPerSec float64) model {
	return model{name: name, price: price, weight: weight, ttftMS: ttftMS, tokensPerSec: tokensPerSec, outputMedian: 220}
}

func reasoning(name string, price Price, weight, ttftMS, tokensPerSec float64) model {
	m := chat(name, price, weight, ttftMS, tokensPerSec)
	m.outputMedian = 1400
	return m
}

func embedding(name string, inputPrice, weight, ms float64) model {
	return model{name: name, price: Price{Input: inputPrice}, weight: weight, embedding: true, ttftMS: ms}
}

// catalog lists the providers in order of popularity; Options.Providers
// takes a prefix of it. Prices are list prices per million tokens.
var catalog = []provider{
	{
		name: "openai", nativeEndpoint: "/v1/responses", weight: 0.30,
		accounts:    []string{"openai-org-main", "openai-org-batch", "openai-org-eu"},
		rateLimited: 0.015, serverError: 0.005, timeout: 0.0015,
		serverErrors: commonServerErrors,
		rateLimits:   rateLimit("Rate limit reached for requests per min (RPM) on this organization. Please try again in 1s."),
		models: []model{
			chat("gpt-4o-mini", Price{0.15, 0.60, 0.075}, 0.35, 320, 110),
			chat("gpt-4o", Price{2.50, 10.00, 1.25}, 0.25, 480, 80),
			chat("gpt-4.1", Price{2.00, 8.00, 0.50}, 0.15, 520, 75),
			chat("gpt-4.1-mini", Price{0.40, 1.60, 0.10}, 0.10, 350, 100),
			reasoning("o3-mini", Price{1.10, 4.40, 0.55}, 0.07, 2200, 120),
			embedding("text-embedding-3-small", 0.02, 0.08, 90),
		},
	},
	{
		name: "anthropic", nativeEndpoint: "/v1/messages", weight: 0.22,
		accounts:    []string{"anthropic-ws-prod", "anthropic-ws-research"},
		rateLimited: 0.012, serverError: 0.006, timeout: 0.002,
		serverErrors: append([]upstreamError{{529, "overloaded", "Overloaded", 600}}, commonServerErrors...),
		rateLimits:   rateLimit("This request would exceed your organization's rate limit of output tokens per minute."),
		models: []model{
			chat("claude-sonnet-4", Price{3.00, 15.00, 0.30}, 0.45, 950, 65),
			chat("claude-3-5-haiku", Price{0.80, 4.00, 0.08}, 0.30, 520, 95),
			chat("claude-opus-4", Price{15.00, 75.00, 1.50}, 0.10, 1800, 32),
			chat("claude-3-7-sonnet", Price{3.00, 15.00, 0.30}, 0.15, 1000, 60),
		},
	},
	{
		name: "gemini", nativeEndpoint: "/v1beta/models:generateContent", weight: 0.13,
		accounts:    []string{"gcp-project-llm", "gcp-project-batch"},
		rateLimited: 0.02, serverError: 0.004, timeout: 0.001,
		serverErrors: commonServerErrors,
		rateLimits:   rateLimit("Resource has been exhausted (e.g. check quota)."),
		models: []model{
			chat("gemini-2.5-flash", Price{0.30, 2.50, 0.075}, 0.40, 380, 170),
			reasoning("gemini-2.5-pro", Price{1.25, 10.00, 0.31}, 0.20, 1600, 85),
			chat("gemini-2.0-flash", Price{0.10, 0.40, 0.025}, 0.20, 300, 190),
			chat("gemini-2.0-flash-lite", Price{0.075, 0.30, 0.01875}, 0.10, 260, 210),
			embedding("text-embedding-004", 0.01, 0.10, 70),
		},
	},
	{
		name: "azure-openai", nativeEndpoint: "/openai/deployments/chat/completions", weight: 0.12,
		accounts:    []string{"azure-eastus-prod", "azure-westeurope-prod", "azure-swedencentral"},
		rateLimited: 0.01, serverError: 0.003, timeout: 0.001,
		serverErrors: commonServerErrors,
		rateLimits:   rateLimit("Requests to the ChatCompletions_Create Operation have exceeded token rate limit of your current tier."),
		models: []model{
			chat("gpt-4o", Price{2.50, 10.00, 1.25}, 0.40, 560, 70),
			chat("gpt-4o-mini", Price{0.165, 0.66, 0.083}, 0.35, 360, 95),
			chat("gpt-4.1", Price{2.00, 8.00, 0.50}, 0.15, 600, 70),
			embedding("text-embedding-3-large", 0.13, 0.10, 110),
		},
	},
	{
		name: "bedrock", nativeEndpoint: "/model/invoke", weight: 0.10,
		accounts:    []string{"aws-us-east-1", "aws-us-west-2", "aws-eu-central-1"},
		rateLimited: 0.018, serverError: 0.004, timeout: 0.002,
		serverErrors: commonServerErrors,
		rateLimits:   rateLimit("ThrottlingException: Too many requests, please wait before trying again."),
		models: []model{
			chat("anthropic.claude-3-5-sonnet", Price{3.00, 15.00, 0.30}, 0.35, 1100, 55),
			chat("anthropic.claude-3-haiku", Price{0.25, 1.25, 0.025}, 0.25, 480, 110),
			chat("meta.llama3-1-70b-instruct", Price{0.72, 0.72, 0}, 0.15, 650, 60),
			chat("amazon.nova-pro", Price{0.80, 3.20, 0.20}, 0.15, 550, 90),
			embedding("amazon.titan-embed-text-v2", 0.02, 0.10, 120),
		},
	},
	{
		name: "deepseek", nativeEndpoint: chatCompletions, weight: 0.07,
		accounts:    []string{"deepseek-main"},
		rateLimited: 0.008, serverError: 0.012, timeout: 0.005,
		serverErrors: commonServerErrors,
		rateLimits:   rateLimit("Rate Limit Reached: you are sending requests too quickly."),
		models: []model{
			chat("deepseek-chat", Price{0.27, 1.10, 0.07}, 0.60, 900, 35),
			reasoning("deepseek-reasoner", Price{0.55, 2.19, 0.14}, 0.30, 3500, 45),
			chat("deepseek-coder", Price{0.14, 0.28, 0.014}, 0.10, 800, 40),
		},
	},
	{
		name: "mistral", nativeEndpoint: chatCompletions, weight: 0.06,
		accounts:    []string{"mistral-workspace"},
		rateLimited: 0.01, serverError: 0.005, timeout: 0.001,
		serverErrors: commonServerErrors,
		rateLimits:   rateLimit("Requests rate limit exceeded"),
		models: []model{
			chat("mistral-small-latest", Price{0.10, 0.30, 0}, 0.40, 260, 140),
			chat("mistral-large-latest", Price{2.00, 6.00, 0}, 0.25, 520, 60),
			chat("codestral-latest", Price{0.30, 0.90, 0}, 0.20, 300, 120),
			embedding("mistral-embed", 0.10, 0.15, 80),
		},
	},
}

// tenantNames are the first tenants' names; more tenants get numbered ones.
var tenantNames = []string{
	"acme", "globex", "initech", "umbrella", "hooli", "stark-industries",
	"wayne-enterprises", "wonka", "cyberdyne", "soylent", "tyrell", "aperture",
	"black-mesa", "massive-dynamic", "vandelay", "dunder-mifflin", "pied-piper",
	"oscorp", "gringotts", "monarch", "nakatomi", "prestige-worldwide",
	"sterling-cooper", "bluth", "krusty-krab", "los-pollos", "virtucon",
	"weyland-yutani", "duff", "gekko",
}

// keyNames name a tenant's gateway keys, most used first.
var keyNames = []string{"prod", "staging", "batch", "dev", "ci", "eval"}
