package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opsflow/opsflow/workflows"
)

// Duration is a time.Duration written as a Go duration string ("90s").
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`must be a duration string such as "90s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 90s or 1h", s)
	}
	*d = Duration(v)
	return nil
}

// RetryOverride is a channel's retry policy: every field it sets replaces
// the configured default (OPSFLOW_NOTIFY_RETRY_*), the rest follow it.
type RetryOverride struct {
	InitialInterval    *Duration `json:"initial_interval,omitempty"`
	BackoffCoefficient *float64  `json:"backoff_coefficient,omitempty"`
	MaximumInterval    *Duration `json:"maximum_interval,omitempty"`
	MaximumAttempts    *int      `json:"maximum_attempts,omitempty"`
}

// Bounds of a channel override: retries faster than a second would hammer
// a struggling target, and slower than a day would hide a dead channel.
const (
	minOverrideInterval = time.Second
	maxOverrideInterval = 24 * time.Hour
	maxCoefficient      = 10
)

// Apply lays the override over p.
func (o *RetryOverride) Apply(p workflows.NotifyRetryPolicy) workflows.NotifyRetryPolicy {
	if o == nil {
		return p
	}
	if o.InitialInterval != nil {
		p.InitialInterval = time.Duration(*o.InitialInterval)
	}
	if o.BackoffCoefficient != nil {
		p.BackoffCoefficient = *o.BackoffCoefficient
	}
	if o.MaximumInterval != nil {
		p.MaximumInterval = time.Duration(*o.MaximumInterval)
	}
	if o.MaximumAttempts != nil {
		p.MaximumAttempts = *o.MaximumAttempts
	}
	return p
}

// validate checks each field set, and the policy it makes with defaults.
func (o *RetryOverride) validate(defaults workflows.NotifyRetryPolicy) error {
	if o == nil {
		return nil
	}
	for _, f := range []struct {
		name string
		d    *Duration
	}{{"retry.initial_interval", o.InitialInterval}, {"retry.maximum_interval", o.MaximumInterval}} {
		if f.d != nil && (time.Duration(*f.d) < minOverrideInterval || time.Duration(*f.d) > maxOverrideInterval) {
			return fieldErr(f.name, "must be from %s to %s", minOverrideInterval, maxOverrideInterval)
		}
	}
	if c := o.BackoffCoefficient; c != nil && (*c < 1 || *c > maxCoefficient) {
		return fieldErr("retry.backoff_coefficient", "must be from 1 to %d", maxCoefficient)
	}
	if n := o.MaximumAttempts; n != nil && (*n < 1 || *n > workflows.MaxNotifyAttempts) {
		return fieldErr("retry.maximum_attempts", "must be from 1 to %d", workflows.MaxNotifyAttempts)
	}
	if err := o.Apply(defaults).Validate(); err != nil {
		return fieldErr("retry", "%s", err)
	}
	return nil
}

// overrideOf reads a stored override; a broken one is ignored in favour of
// the defaults rather than blocking delivery.
func overrideOf(raw json.RawMessage) *RetryOverride {
	if len(raw) == 0 {
		return nil
	}
	var o RetryOverride
	if json.Unmarshal(raw, &o) != nil {
		return nil
	}
	return &o
}

// policyView shows a whole policy in the override's form.
func policyView(p workflows.NotifyRetryPolicy) RetryOverride {
	initial, maxInterval := Duration(p.InitialInterval), Duration(p.MaximumInterval)
	coefficient, attempts := p.BackoffCoefficient, p.MaximumAttempts
	return RetryOverride{InitialInterval: &initial, BackoffCoefficient: &coefficient, MaximumInterval: &maxInterval, MaximumAttempts: &attempts}
}
