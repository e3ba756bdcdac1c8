package catalog

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Validate reports everything wrong with c, each problem naming its path:
//
//   - at least one region and one service; region and service names valid
//     (see CheckServiceName, CheckRegionName), a region's capacity in
//     [1, 1000000];
//   - a service's instances in [0, 1000000] (0 means DefaultInstances), and
//     at least one version;
//   - version names valid (see CheckVersionName) and no two of a service's
//     differing only in case;
//   - in every profile, error_rate, cpu and memory in [0, 1] and p99 in
//     [0, 1h]; region overrides only for known regions;
//   - degrade_after_secs in [0, 30 days], and given together with degraded
//     or not at all;
//   - running only in known regions, only known versions, and never more
//     instances in a region than its capacity.
func (c *Catalog) Validate() error {
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("catalog: %s: %s", path, fmt.Sprintf(format, args...)))
	}

	if len(c.Regions) == 0 {
		fail("regions", "at least one region is needed")
	}
	for _, name := range c.RegionNames() {
		path := "regions." + name
		if err := CheckRegionName(name); err != nil {
			fail(path, "%v", err)
		}
		if capacity := c.Regions[name].Capacity; capacity < 1 || capacity > maxCount {
			fail(path+".capacity", "must be in [1,%d], got %d", maxCount, capacity)
		}
	}

	if len(c.Services) == 0 {
		fail("services", "at least one service is needed")
	}
	inUse := map[string]int{} // region -> instances the running versions need
	for _, name := range c.ServiceNames() {
		s := c.Services[name]
		path := "services." + name
		if err := CheckServiceName(name); err != nil {
			fail(path, "%v", err)
		}
		if s.Instances < 0 || s.Instances > maxCount {
			fail(path+".instances", "must be in [0,%d], got %d", maxCount, s.Instances)
		}
		if len(s.Versions) == 0 {
			fail(path+".versions", "at least one version is needed")
		}
		lower := map[string]string{} // lower case -> first version name seen
		for _, vname := range c.VersionNames(name) {
			vpath := path + ".versions." + vname
			if err := CheckVersionName(vname); err != nil {
				fail(vpath, "%v", err)
			}
			if other, ok := lower[strings.ToLower(vname)]; ok {
				fail(vpath, "differs from version %s only in case", other)
			} else {
				lower[strings.ToLower(vname)] = vname
			}
			errs = append(errs, c.checkVersion(vpath, s.Versions[vname])...)
		}
		for _, region := range sortedKeys(s.Running) {
			version := s.Running[region]
			rpath := path + ".running." + region
			if _, ok := c.Regions[region]; !ok {
				fail(rpath, "unknown region %q", region)
			}
			if _, ok := s.Versions[version]; !ok {
				fail(rpath, "unknown version %q", version)
			}
			if s.Instances >= 0 && s.Instances <= maxCount {
				inUse[region] += c.Instances(name)
			}
		}
	}
	for _, region := range sortedKeys(inUse) {
		r, ok := c.Regions[region]
		if ok && inUse[region] > r.Capacity {
			fail("regions."+region+".capacity", "the running services need %d instances, more than the capacity of %d", inUse[region], r.Capacity)
		}
	}
	return errors.Join(errs...)
}

func (c *Catalog) checkVersion(path string, v Version) []error {
	errs := checkProfile(path, v.Profile)
	for _, region := range sortedKeys(v.Regions) {
		rpath := path + ".regions." + region
		if _, ok := c.Regions[region]; !ok {
			errs = append(errs, fmt.Errorf("catalog: %s: unknown region %q", rpath, region))
		}
		errs = append(errs, checkProfile(rpath, v.Regions[region])...)
	}
	if v.DegradeAfter < 0 || v.DegradeAfter > maxDegradeAfter {
		errs = append(errs, fmt.Errorf("catalog: %s.degrade_after_secs: must be in [0,%v], got %v",
			path, maxDegradeAfter.Seconds(), v.DegradeAfter.Seconds()))
	}
	switch {
	case v.DegradeAfter > 0 && v.Degraded == nil:
		errs = append(errs, fmt.Errorf("catalog: %s: degrade_after_secs needs a degraded profile", path))
	case v.DegradeAfter == 0 && v.Degraded != nil:
		errs = append(errs, fmt.Errorf("catalog: %s: degraded needs a positive degrade_after_secs", path))
	}
	if v.Degraded != nil {
		errs = append(errs, checkProfile(path+".degraded", *v.Degraded)...)
	}
	return errs
}

func checkProfile(path string, p Profile) []error {
	var errs []error
	share := func(field string, v float64) {
		if !(v >= 0 && v <= 1) { // false for NaN too
			errs = append(errs, fmt.Errorf("catalog: %s.%s: must be in [0,1], got %v", path, field, v))
		}
	}
	share("error_rate", p.ErrorRate)
	if p.P99 < 0 || p.P99 > maxP99 {
		errs = append(errs, fmt.Errorf("catalog: %s.p99_ms: must be in [0,%v], got %v",
			path, millis(maxP99), millis(p.P99)))
	}
	share("cpu", p.CPU)
	share("memory", p.Memory)
	return errs
}

func millis(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// CheckServiceName returns an error unless name is a valid service name:
// 1 to 63 lowercase ASCII letters, digits and '-'.
func CheckServiceName(name string) error {
	if !isLabel(name, 63) {
		return fmt.Errorf("invalid service name %q: want 1 to 63 lowercase letters, digits and '-'", name)
	}
	return nil
}

// CheckRegionName returns an error unless name is a valid region name: 1
// to 63 lowercase ASCII letters, digits and '-'.
func CheckRegionName(name string) error {
	if !isLabel(name, 63) {
		return fmt.Errorf("invalid region name %q: want 1 to 63 lowercase letters, digits and '-'", name)
	}
	return nil
}

// CheckVersionName returns an error unless name is a valid version name:
// 1 to 128 bytes of printable UTF-8, without spaces or '/'.
func CheckVersionName(name string) error {
	ok := len(name) >= 1 && len(name) <= 128 && utf8.ValidString(name)
	for _, r := range name {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '/' {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("invalid version name %q: want 1 to 128 bytes of printable characters, without spaces or '/'", name)
	}
	return nil
}

func isLabel(name string, max int) bool {
	if len(name) < 1 || len(name) > max {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
