// Package catalog says what there is to deploy: services, the versions
// (images) of each with the health each shows when it runs, the regions
// with how many instances each can hold, and which version runs now in
// each region.
//
// A catalog is a JSON document:
//
//	{
//	  "regions": {
//	    "us-west-2": {"capacity": 200}
//	  },
//	  "services": {
//	    "api-service": {
//	      "description": "optional, free text",
//	      "instances": 4,
//	      "running": {"us-west-2": "v1.0.0"},
//	      "versions": {
//	        "v1.0.0": {"error_rate": 0.005, "p99_ms": 150, "cpu": 0.35, "memory": 0.45},
//	        "v2.0.0": {
//	          "error_rate": 0.006, "p99_ms": 140, "cpu": 0.33, "memory": 0.44,
//	          "regions": {"us-west-2": {"error_rate": 0.09, "p99_ms": 140, "cpu": 0.33, "memory": 0.44}},
//	          "degrade_after_secs": 4,
//	          "degraded": {"error_rate": 0.15, "p99_ms": 400, "cpu": 0.45, "memory": 0.5}
//	        }
//	      }
//	    }
//	  }
//	}
//
// A version's profile (error_rate, p99_ms, cpu, memory: all four required)
// is what the version shows in every region, unless "regions" overrides it
// for a region with a whole profile of its own. With "degrade_after_secs"
// the version turns to its "degraded" profile, in every region, once it has
// run that long. "instances" is how many instances a deployment runs per
// region (4 when absent); "running" names the version each region runs now
// (a service may run nowhere yet).
//
// Parse is strict: unknown or repeated fields, wrong types, values out of
// range, invalid names and references to unknown regions or versions are
// errors that name the path of the offending value, such as
// services.api-service.versions.v2.0.0.error_rate. Demo returns the
// catalog the deployment service's demo and tests use; its source,
// demo.json, is a fuller example of the format.
//
// A Catalog is not changed by any of its methods, so one may be read from
// many goroutines, as long as nobody changes it meanwhile.
package catalog

import (
	"slices"
	"time"
)

// DefaultInstances is how many instances per region a service runs when
// its Instances is zero.
const DefaultInstances = 4

// Profile is how a version behaves when it runs: the health a fleet
// reports for it. Its JSON fields are error_rate, p99_ms (milliseconds),
// cpu and memory; the shares are in [0, 1].
type Profile struct {
	ErrorRate float64       // share of requests that fail
	P99       time.Duration // 99th percentile latency
	CPU       float64       // share of CPU in use
	Memory    float64       // share of memory in use
}

// Version is one deployable version (image) of a service. Its JSON object
// holds the Profile's fields beside its own.
type Version struct {
	Profile                         // health in every region not in Regions
	Description  string             // free text for people; JSON "description"
	Regions      map[string]Profile // health in particular regions, replacing Profile there
	DegradeAfter time.Duration      // JSON degrade_after_secs; 0: never degrades
	Degraded     *Profile           // health everywhere once DegradeAfter has passed since deployment
}

// Service is something deployed: its versions and where each runs.
type Service struct {
	Description string             `json:"description,omitempty"` // free text for people
	Instances   int                `json:"instances,omitempty"`   // per region; 0 means DefaultInstances
	Versions    map[string]Version `json:"versions"`              // by version name (image tag)
	Running     map[string]string  `json:"running,omitempty"`     // region name -> version running there now
}

// Region is a place services run in.
type Region struct {
	Capacity int `json:"capacity"` // instances the region can run, of all services together
}

// Catalog is everything there is to deploy and everywhere it can go.
// Build one with Parse, Load or Demo; one built in code should pass
// Validate before use.
type Catalog struct {
	Services map[string]Service `json:"services"` // by service name
	Regions  map[string]Region  `json:"regions"`  // by region name
}

// HasImage reports whether the catalog knows version of service.
func (c *Catalog) HasImage(service, version string) bool {
	_, ok := c.Services[service].Versions[version]
	return ok
}

// Region returns the named region.
func (c *Catalog) Region(name string) (Region, bool) {
	r, ok := c.Regions[name]
	return r, ok
}

// RegionNames returns the names of all regions, sorted.
func (c *Catalog) RegionNames() []string {
	return sortedKeys(c.Regions)
}

// ServiceNames returns the names of all services, sorted.
func (c *Catalog) ServiceNames() []string {
	return sortedKeys(c.Services)
}

// VersionNames returns the names of service's versions, sorted, or nil for
// an unknown service.
func (c *Catalog) VersionNames(service string) []string {
	return sortedKeys(c.Services[service].Versions)
}

// Running returns the version of service that runs now in region; ok is
// false when it runs nowhere there or the service is unknown.
func (c *Catalog) Running(service, region string) (version string, ok bool) {
	version, ok = c.Services[service].Running[region]
	return version, ok
}

// Instances is how many instances service runs per region:
// DefaultInstances unless the service says otherwise, and 0 for an unknown
// service.
func (c *Catalog) Instances(service string) int {
	s, ok := c.Services[service]
	switch {
	case !ok:
		return 0
	case s.Instances == 0:
		return DefaultInstances
	default:
		return s.Instances
	}
}

// Profile returns how version of service behaves in region when it has run
// for sinceDeploy: the version's Degraded profile once sinceDeploy reaches
// its DegradeAfter, else its profile for the region if it has one, else
// its general profile. ok is false when the service, version or region is
// unknown.
func (c *Catalog) Profile(service, version, region string, sinceDeploy time.Duration) (Profile, bool) {
	v, ok := c.Services[service].Versions[version]
	if !ok {
		return Profile{}, false
	}
	if _, ok := c.Regions[region]; !ok {
		return Profile{}, false
	}
	if v.DegradeAfter > 0 && v.Degraded != nil && sinceDeploy >= v.DegradeAfter {
		return *v.Degraded, true
	}
	if p, ok := v.Regions[region]; ok {
		return p, true
	}
	return v.Profile, true
}

func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
