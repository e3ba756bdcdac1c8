package check

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// LoadCompose loads a Compose file with the Compose specification's
// reference loader (compose-go) strictly: the file is validated against the
// specification's schema (an unknown key is an error), the references
// between services, volumes, networks and secrets are checked, paths are
// resolved against the file's directory, and no environment or .env file
// is read, so the project is what the file says.
func LoadCompose(ctx context.Context, file string) (*types.Project, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	details := types.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []types.ConfigFile{{Filename: abs, Content: b}},
		Environment: types.Mapping{},
	}
	return loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SkipValidation = false
		o.SkipConsistencyCheck = false
		o.ResolvePaths = true
	})
}

// ComposeFiles are files a Compose project refers to that are not kept in
// the repository but made on the way (the tokens `make deploy-secrets`
// writes): CheckCompose accepts them absent. Paths are relative to the
// repository's root, with slashes.
type ComposeFiles []string

// CheckCompose checks a loaded project against the repository at root:
//
//   - every service has an image or a build whose context lies in the
//     repository and whose Dockerfile exists there;
//   - every bind mount's source and every secret's file exists in the
//     repository (a secret's file may be one of made);
//   - no two services publish the same host port (a port on all
//     addresses clashes with the same port on any one);
//   - a service another waits for with condition service_healthy has a
//     health check, in the file or in the image's Dockerfile;
//   - a service told to listen beyond loopback (ADDR) has an API token,
//     and every *_FILE variable under /run/secrets/ names a secret the
//     service mounts;
//   - a service given ALLOWED_HOSTS allows the host its health check asks;
//   - no service is given a token (API_TOKEN, ADMIN_TOKEN) in its
//     environment, which docker inspect shows, rather than in a secret;
//   - a service with DATA_DIR mounts a volume there (at it or above it),
//     writable, that no other service mounts, and services of one image
//     have distinct INSTANCE names.
//
// The error lists every problem found.
func CheckCompose(p *types.Project, root string, made ComposeFiles) error {
	var pr problems
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range p.Services {
			if !yield(n) {
				return
			}
		}
	})
	type published struct{ service, ip, port, proto string }
	var ports []published
	dataVolumes := map[string]string{}
	instances := map[string]string{}
	for _, name := range names {
		s := p.Services[name]
		where := "service " + name
		if s.Image == "" && s.Build == nil {
			pr.add("%s: neither image nor build", where)
		}
		if s.Build != nil {
			checkBuild(&pr, where, root, s.Build)
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if !inside(root, v.Source) {
				pr.add("%s: bind mount %s lies outside the repository", where, v.Source)
			} else if _, err := os.Stat(v.Source); err != nil {
				rel, _ := filepath.Rel(root, v.Source)
				pr.add("%s: bind mount source %s does not exist in the repository", where, filepath.ToSlash(rel))
			}
		}
		for _, port := range s.Ports {
			if port.Published == "" {
				continue
			}
			proto := port.Protocol
			if proto == "" {
				proto = "tcp"
			}
			ports = append(ports, published{name, port.HostIP, port.Published, proto})
		}
		for dep, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionHealthy && !healthChecked(root, p.Services[dep]) {
				pr.add("%s waits for %s to be healthy, but %s has no health check", where, dep, dep)
			}
		}
		env := func(k string) string {
			if v := s.Environment[k]; v != nil {
				return *v
			}
			return ""
		}
		if allowed, ok := s.Environment["ALLOWED_HOSTS"]; ok && allowed != nil && *allowed != "" {
			checkAllowedHosts(&pr, where, root, s, *allowed)
		}
		if addr := env("ADDR"); addr != "" && !loopback(addr) && env("API_TOKEN") == "" && env("API_TOKEN_FILE") == "" {
			pr.add("%s: ADDR %s listens beyond loopback without API_TOKEN_FILE: the service refuses to start", where, addr)
		}
		mounted := map[string]bool{}
		for _, sec := range s.Secrets {
			target := sec.Target
			if target == "" {
				target = sec.Source
			}
			mounted[resolve("/run/secrets", target)] = true
		}
		for k, v := range s.Environment {
			if v != nil && strings.HasSuffix(k, "_FILE") && strings.HasPrefix(*v, "/run/secrets/") && !mounted[path.Clean(*v)] {
				pr.add("%s: %s=%s, but the service mounts no secret there", where, k, *v)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(plainTokens)) {
			if env(k) != "" {
				pr.add("%s: %s is set in plain text in its environment, which docker inspect shows: mount it as a secret and name the file with %s", where, k, plainTokens[k])
			}
		}
		if dir := env("DATA_DIR"); dir != "" {
			mount := dataMount(s.Volumes, path.Clean(dir))
			vol := ""
			if mount != nil {
				vol = mount.Type + ":" + mount.Source
				if mount.Source == "" { // anonymous: the container's own
					vol += name
				}
			}
			switch other, taken := dataVolumes[vol]; {
			case vol == "":
				pr.add("%s: DATA_DIR %s is not a mounted volume: the data would go with the container (and a read-only one cannot write it)", where, dir)
			case mount.ReadOnly:
				pr.add("%s: DATA_DIR %s is on %s, mounted read-only: the service cannot write it", where, dir, vol)
			case taken:
				pr.add("%s: its DATA_DIR volume %s is %s's as well; each replica needs its own (the service locks it)", where, vol, other)
			default:
				dataVolumes[vol] = name
			}
		}
		if inst := env("INSTANCE"); inst != "" {
			key := s.Image + "\x00" + inst
			if other, taken := instances[key]; taken {
				pr.add("%s: INSTANCE %s is %s's as well; each replica's name must be its own", where, inst, other)
			}
			instances[key] = name
		}
	}
	for i, a := range ports {
		for _, b := range ports[i+1:] {
			if a.port == b.port && a.proto == b.proto && (a.ip == b.ip || anyAddr(a.ip) || anyAddr(b.ip)) {
				pr.add("services %s and %s both publish %s/%s on the host", a.service, b.service, a.port, a.proto)
			}
		}
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for n := range p.Secrets {
			if !yield(n) {
				return
			}
		}
	}) {
		sec := p.Secrets[name]
		if sec.File == "" {
			continue
		}
		rel, err := filepath.Rel(root, sec.File)
		if err != nil || !inside(root, sec.File) {
			pr.add("secret %s: file %s lies outside the repository", name, sec.File)
			continue
		}
		if _, err := os.Stat(sec.File); err != nil && !slices.Contains(made, filepath.ToSlash(rel)) {
			pr.add("secret %s: file %s does not exist, and nothing makes it", name, filepath.ToSlash(rel))
		}
	}
	return pr.err()
}

// dataMount returns the mount of volumes that holds dir, the deepest
// when several do (as in the container), or nil.
func dataMount(volumes []types.ServiceVolumeConfig, dir string) *types.ServiceVolumeConfig {
	var best *types.ServiceVolumeConfig
	for i, v := range volumes {
		target := path.Clean(v.Target)
		if dir != target && !strings.HasPrefix(dir, strings.TrimSuffix(target, "/")+"/") {
			continue
		}
		if best == nil || len(target) > len(path.Clean(best.Target)) {
			best = &volumes[i]
		}
	}
	return best
}

func checkBuild(pr *problems, where, root string, b *types.BuildConfig) {
	if !inside(root, b.Context) {
		pr.add("%s: build context %s lies outside the repository", where, b.Context)
		return
	}
	if st, err := os.Stat(b.Context); err != nil || !st.IsDir() {
		pr.add("%s: build context %s is not a directory of the repository", where, b.Context)
		return
	}
	df := b.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if !filepath.IsAbs(df) {
		df = filepath.Join(b.Context, df)
	}
	if _, err := os.Stat(df); err != nil {
		rel, _ := filepath.Rel(root, df)
		pr.add("%s: Dockerfile %s does not exist", where, filepath.ToSlash(rel))
	}
}

// healthChecked reports whether s has a health check: its own, or its
// image's Dockerfile's HEALTHCHECK when it builds one.
func healthChecked(root string, s types.ServiceConfig) bool {
	test := healthTest(root, s)
	return len(test) > 0 && test[0] != "NONE"
}

// healthTest returns the command of s's health check: its own, or the
// HEALTHCHECK of the Dockerfile it builds; nil when it has none or turns
// it off.
func healthTest(root string, s types.ServiceConfig) []string {
	if s.HealthCheck != nil {
		if s.HealthCheck.Disable {
			return nil
		}
		return s.HealthCheck.Test
	}
	if s.Build == nil || !inside(root, s.Build.Context) {
		return nil
	}
	df := s.Build.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	f, err := os.Open(filepath.Join(s.Build.Context, df))
	if err != nil {
		return nil
	}
	defer f.Close()
	d, err := ParseDockerfile(df, f)
	if err != nil {
		return nil
	}
	last := d.Stages[len(d.Stages)-1]
	for _, in := range slices.Backward(last.Instructions) {
		if in.Cmd == "HEALTHCHECK" {
			return in.Args
		}
	}
	return nil
}

// checkAllowedHosts checks that a service given ALLOWED_HOSTS still
// answers its own health check: the services answer a Host outside the
// list with 421, and the image's HEALTHCHECK asks http://127.0.0.1:PORT,
// which the default list holds but a list given in its place must name
// too, or the container is never healthy.
func checkAllowedHosts(pr *problems, where, root string, s types.ServiceConfig, allowed string) {
	hosts := map[string]bool{}
	for _, h := range strings.Split(allowed, ",") {
		if h = allowedHost(strings.TrimSpace(h)); h == "*" {
			return
		} else if h != "" {
			hosts[h] = true
		}
	}
	for _, arg := range healthTest(root, s) {
		u, err := url.Parse(arg)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			continue
		}
		if h := allowedHost(u.Host); !hosts[h] {
			pr.add("%s: ALLOWED_HOSTS %s leaves out %s, which its health check asks (%s): the service answers it 421 and the container is never healthy", where, allowed, h, arg)
		}
	}
}

// allowedHost is a Host value as the services compare it: without its
// port, brackets and the root's dot, in lower case, an IP address in its
// shortest spelling.
func allowedHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.String()
	}
	return strings.TrimSuffix(host, ".")
}

// loopback reports whether a listen address is on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") { // as the services read it
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// anyAddr reports whether a published port's host IP means every address.
func anyAddr(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
