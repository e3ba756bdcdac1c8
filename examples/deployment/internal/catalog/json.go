package catalog

import "encoding/json"

// profileJSON is a Profile's JSON form.
type profileJSON struct {
	ErrorRate float64 `json:"error_rate"`
	P99       float64 `json:"p99_ms"`
	CPU       float64 `json:"cpu"`
	Memory    float64 `json:"memory"`
}

func (p Profile) toJSON() profileJSON {
	return profileJSON{ErrorRate: p.ErrorRate, P99: millis(p.P99), CPU: p.CPU, Memory: p.Memory}
}

// MarshalJSON writes p in its JSON form, the form Parse reads.
func (p Profile) MarshalJSON() ([]byte, error) {
	return json.Marshal(p.toJSON())
}

// MarshalJSON writes v in its JSON form, the form Parse reads: the
// Profile's fields beside the Version's own.
func (v Version) MarshalJSON() ([]byte, error) {
	type versionJSON struct {
		profileJSON
		Description  string             `json:"description,omitempty"`
		Regions      map[string]Profile `json:"regions,omitempty"`
		DegradeAfter float64            `json:"degrade_after_secs,omitempty"`
		Degraded     *Profile           `json:"degraded,omitempty"`
	}
	return json.Marshal(versionJSON{
		profileJSON:  v.Profile.toJSON(),
		Description:  v.Description,
		Regions:      v.Regions,
		DegradeAfter: v.DegradeAfter.Seconds(),
		Degraded:     v.Degraded,
	})
}
