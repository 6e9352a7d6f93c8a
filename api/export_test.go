package api

// Hooks that let the external api_test package reach unexported decoding.
type (
	IngestLimits = ingestLimits
	DecodedBatch = decodedBatch
)

var DecodeBatch = decodeBatch
