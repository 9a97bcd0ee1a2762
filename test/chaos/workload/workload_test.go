package workload

import (
	"os"
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func TestEveryManifestIsAPodOfItsName(t *testing.T) {
	for _, k := range kinds {
		var p v1.Pod
		if err := yaml.UnmarshalStrict([]byte(k.manifest(7, "img", 32110)), &p); err != nil {
			t.Fatalf("%s: %v", k.name, err)
		}
		if p.Name != k.name || p.Annotations[GenerationAnnotation] != "7" || len(p.Spec.Containers) == 0 {
			t.Errorf("%s: got name %q, annotations %v, %d containers", k.name, p.Name, p.Annotations, len(p.Spec.Containers))
		}
	}
}

func TestTheSameSeedMakesTheSameEdits(t *testing.T) {
	edits := func() []string {
		w := New(Config{ManifestDir: t.TempDir(), Image: "img", Seed: 42})
		var out []string
		for range 5 {
			ops, err := w.edit()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ops)
		}
		entries, _ := os.ReadDir(w.cfg.ManifestDir)
		if len(entries) != len(w.present) {
			t.Errorf("%d files for %d present manifests", len(entries), len(w.present))
		}
		return out
	}
	a, b := edits(), edits()
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("seed 42 made different edits:\n%q\n%q", a, b)
	}
}
