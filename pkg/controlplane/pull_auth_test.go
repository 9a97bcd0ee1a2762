package controlplane

import (
	"testing"

	"github.com/containerd/errdefs"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pullSecret(typ v1.SecretType, key, config string) *v1.Secret {
	return &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "pull", Namespace: "default"},
		Type:       typ,
		Data:       map[string][]byte{key: []byte(config)},
	}
}

func TestPullAuths(t *testing.T) {
	tests := []struct {
		name    string
		secret  *v1.Secret
		want    map[string]DockerAuth
		wantErr string
	}{
		{
			name: "host:port with username and password",
			secret: pullSecret(v1.SecretTypeDockerConfigJson, v1.DockerConfigJsonKey,
				`{"auths": {"reg.example.test:5000": {"username": "u", "password": "p"}}}`),
			want: map[string]DockerAuth{"reg.example.test:5000": {Username: "u", Password: "p"}},
		},
		{
			name: "keys with a scheme and a path are reduced to the host",
			secret: pullSecret(v1.SecretTypeDockerConfigJson, v1.DockerConfigJsonKey,
				`{"auths": {"https://Reg.Example.test/v1/": {"identitytoken": "id"}, "http://localhost:5000": {"registrytoken": "rt"}}}`),
			want: map[string]DockerAuth{
				"reg.example.test": {IdentityToken: "id"},
				"localhost:5000":   {RegistryToken: "rt"},
			},
		},
		{
			name: "auth is decoded when there is no username",
			secret: pullSecret(v1.SecretTypeDockerConfigJson, v1.DockerConfigJsonKey,
				`{"auths": {"reg.example.test": {"auth": "`+b64("user:pa:ss")+`"}}}`),
			want: map[string]DockerAuth{"reg.example.test": {Username: "user", Password: "pa:ss", Auth: b64("user:pa:ss")}}},
		{
			name: "an explicit username wins over auth",
			secret: pullSecret(v1.SecretTypeDockerConfigJson, v1.DockerConfigJsonKey,
				`{"auths": {"reg.example.test": {"username": "u", "password": "p", "auth": "`+b64("x:y")+`"}}}`),
			want: map[string]DockerAuth{"reg.example.test": {Username: "u", Password: "p", Auth: b64("x:y")}},
		},
		{
			name:   "legacy dockercfg",
			secret: pullSecret(v1.SecretTypeDockercfg, v1.DockerConfigKey, `{"reg.example.test": {"auth": "`+b64("a:b")+`"}}`),
			want:   map[string]DockerAuth{"reg.example.test": {Username: "a", Password: "b", Auth: b64("a:b")}},
		},
		{
			name: "auth that is not user:password",
			secret: pullSecret(v1.SecretTypeDockerConfigJson, v1.DockerConfigJsonKey,
				`{"auths": {"reg.example.test": {"auth": "`+b64("nocolon")+`"}}}`),
			wantErr: `image pull secret default/pull: registry "reg.example.test": "auth" does not decode to user:password: invalid argument`,
		},
		{
			name:    "no auths object",
			secret:  pullSecret(v1.SecretTypeDockerConfigJson, v1.DockerConfigJsonKey, `{}`),
			wantErr: `image pull secret default/pull: .dockerconfigjson has no "auths" object: invalid argument`,
		},
		{
			name:    "invalid JSON is not quoted",
			secret:  pullSecret(v1.SecretTypeDockerConfigJson, v1.DockerConfigJsonKey, `{"auths": s3cret}`),
			wantErr: `image pull secret default/pull: .dockerconfigjson is not a docker config: invalid JSON at byte 11: invalid argument`,
		},
		{
			name:    "not a pull secret",
			secret:  pullSecret(v1.SecretTypeOpaque, "x", "y"),
			wantErr: `image pull secret default/pull: type "Opaque" is not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg: invalid argument`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PullAuths(tc.secret)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("error = %v, want %q of class InvalidArgument", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("auths = %+v, want %+v", got, tc.want)
			}
			for host, want := range tc.want {
				if got[host] != want {
					t.Errorf("auths[%q] = %+v, want %+v", host, got[host], want)
				}
			}
		})
	}
}

func TestMatchAuth(t *testing.T) {
	// Written by hand as a docker config would have them, not normalized.
	auths := map[string]DockerAuth{
		"reg.example.test:5000":     {Username: "port"},
		"https://reg.example.test/": {Username: "plain"},
		"http://localhost:5000/v2/": {Username: "local"},
		"mirror.example.test/v1/":   {Username: "mirror"},
	}
	tests := []struct {
		image    string
		wantUser string // "" for no match
	}{
		{"reg.example.test:5000/team/app:1.2", "port"},
		{"reg.example.test/team/app:1.2", "plain"},
		{"REG.example.test/app", "plain"},
		{"reg.example.test/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "plain"},
		{"localhost:5000/app", "local"},
		{"localhost/app", ""},
		{"mirror.example.test/lib/app", "mirror"},
		{"reg.example.test:5001/app", ""},
		{"other.example.test/app", ""},
		// No registry host: the default registry, which is not matched (see MatchAuth).
		{"app:1.2", ""},
		{"team/app", ""},
		{"app:5000", ""},
	}
	for _, tc := range tests {
		t.Run(tc.image, func(t *testing.T) {
			a, ok := MatchAuth(auths, tc.image)
			if ok != (tc.wantUser != "") || a.Username != tc.wantUser {
				t.Errorf("MatchAuth = %+v, %v; want user %q", a, ok, tc.wantUser)
			}
		})
	}

	// PullAuths's output (keys already hosts) matches the same way.
	norm, err := PullAuths(pullSecret(v1.SecretTypeDockerConfigJson, v1.DockerConfigJsonKey,
		`{"auths": {"https://reg.example.test:5000/v1/": {"username": "u"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := MatchAuth(norm, "reg.example.test:5000/app"); !ok || a.Username != "u" {
		t.Errorf("MatchAuth on PullAuths output = %+v, %v", a, ok)
	}
}
