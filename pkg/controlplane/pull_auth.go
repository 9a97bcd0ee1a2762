package controlplane

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
)

// DockerAuth is one registry's credentials from an image pull secret, in the shape of the
// CRI's AuthConfig.
type DockerAuth struct {
	Username string
	Password string
	// Auth is the entry's "auth" as written: base64 of "user:password". When the entry has
	// no username, PullAuths has decoded it into Username and Password.
	Auth          string
	IdentityToken string
	RegistryToken string
}

// dockerConfigEntry is one registry's entry in a docker config file.
type dockerConfigEntry struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// PullAuths reads the credentials of an image pull secret: a kubernetes.io/dockerconfigjson
// secret ({"auths": {registry: entry}}) or a legacy kubernetes.io/dockercfg one ({registry:
// entry}). The result is keyed by registry host ("host" or "host:port", lower case): the
// scheme and path the entries may be written with are dropped; of two entries for the same
// host, the first in key order wins. Errors are of class errdefs.ErrInvalidArgument and never
// quote the secret's content.
func PullAuths(secret *v1.Secret) (map[string]DockerAuth, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("image pull secret %s/%s: %s: %w", secret.Namespace, secret.Name,
			fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	var entries map[string]dockerConfigEntry
	switch secret.Type {
	case v1.SecretTypeDockerConfigJson:
		raw, ok := secret.Data[v1.DockerConfigJsonKey]
		if !ok {
			return nil, invalid("no %s key", v1.DockerConfigJsonKey)
		}
		var cfg struct {
			Auths map[string]dockerConfigEntry `json:"auths"`
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return nil, invalid("%s is not a docker config: %v", v1.DockerConfigJsonKey, jsonError(err))
		}
		if cfg.Auths == nil {
			return nil, invalid(`%s has no "auths" object`, v1.DockerConfigJsonKey)
		}
		entries = cfg.Auths
	case v1.SecretTypeDockercfg:
		raw, ok := secret.Data[v1.DockerConfigKey]
		if !ok {
			return nil, invalid("no %s key", v1.DockerConfigKey)
		}
		if err := json.Unmarshal(raw, &entries); err != nil {
			return nil, invalid("%s is not a docker config: %v", v1.DockerConfigKey, jsonError(err))
		}
	default:
		return nil, invalid("type %q is not %s or %s", secret.Type, v1.SecretTypeDockerConfigJson, v1.SecretTypeDockercfg)
	}

	out := make(map[string]DockerAuth, len(entries))
	for _, key := range slices.Sorted(maps.Keys(entries)) {
		host := normalizeRegistryKey(key)
		if _, ok := out[host]; ok || host == "" {
			continue
		}
		e := entries[key]
		a := DockerAuth(e)
		if a.Username == "" && a.Auth != "" {
			user, pass, err := decodeAuthField(a.Auth)
			if err != nil {
				return nil, invalid("registry %q: %v", key, err)
			}
			a.Username, a.Password = user, pass
		}
		out[host] = a
	}
	return out, nil
}

// jsonError is err from decoding a secret's JSON, without the quote of the content that a
// syntax error's message carries.
func jsonError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d", se.Offset)
	}
	return err
}

// decodeAuthField decodes an entry's "auth": base64 of "user:password".
func decodeAuthField(auth string) (user, password string, err error) {
	b, err := base64.StdEncoding.DecodeString(auth)
	if err != nil {
		return "", "", errors.New(`"auth" is not base64`)
	}
	user, password, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", errors.New(`"auth" does not decode to user:password`)
	}
	return user, password, nil
}

// MatchAuth returns the credentials in auths for the registry of image, an image reference
// such as "host:5000/team/app:1.2" or "host/app@sha256:...". The keys of auths may be hosts
// (as PullAuths returns them) or written as in a docker config, with a scheme and a path.
//
// An image whose reference names no registry host ("app:1.2", "team/app") is pulled from
// the default registry, whose name this package does not know: github.com/distribution/
// reference, which defines it, is not a dependency. Such images match nothing; their pulls
// go without credentials.
func MatchAuth(auths map[string]DockerAuth, image string) (DockerAuth, bool) {
	host := imageRegistryHost(image)
	if host == "" {
		return DockerAuth{}, false
	}
	if a, ok := auths[host]; ok {
		return a, true
	}
	for _, key := range slices.Sorted(maps.Keys(auths)) {
		if normalizeRegistryKey(key) == host {
			return auths[key], true
		}
	}
	return DockerAuth{}, false
}

// normalizeRegistryKey reduces a docker config key ("https://host:5000/v1/", "host/v2",
// "HOST") to its host and port, in lower case.
func normalizeRegistryKey(key string) string {
	if _, rest, ok := strings.Cut(key, "://"); ok {
		key = rest
	}
	host, _, _ := strings.Cut(key, "/")
	return strings.ToLower(host)
}

// imageRegistryHost returns the registry host (and port) of an image reference in lower
// case, or "" when it names none. As in the reference grammar, the first path component is
// a host only if it contains a dot or a colon, is "localhost", or has upper-case letters
// (which a repository name cannot): "host:5000/app" has one, "app:5000" does not (that is a
// tag).
func imageRegistryHost(image string) string {
	first, _, ok := strings.Cut(image, "/")
	if !ok {
		return ""
	}
	if !strings.ContainsAny(first, ".:") && first != "localhost" && strings.ToLower(first) == first {
		return ""
	}
	return strings.ToLower(first)
}
