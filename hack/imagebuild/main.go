// Command imagebuild writes a one-layer OCI image layout (and optionally the same layout as a
// tar archive) from files on the host, so the test bed needs no registry to get its images.
//
//	imagebuild -name nodeagent.local/busybox:1.36 -out DIR [-tar FILE] \
//	    [-busybox /bin/busybox] [-add SRC=DEST]... [-entrypoint ARG]... [-cmd ARG]... [-env K=V]...
//
// The output is reproducible: fixed timestamps and owners, sorted entries, so the same inputs
// give the same digests and a registry or containerd sees the same image every time.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"

	annotationRefName = "org.opencontainers.image.ref.name"
	// containerd names an imported image after this annotation; the OCI one holds only the tag.
	annotationImageName = "io.containerd.image.name"
)

// epoch is the mtime of every layer entry; a fixed value keeps digests stable across builds.
var epoch = time.Unix(0, 0).UTC()

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// entry is one file, directory or symlink of the layer.
type entry struct {
	mode    int64
	typ     byte
	linkTo  string
	content []byte
}

type layer map[string]*entry // keyed by clean relative path, e.g. "bin/busybox"

func (l layer) dir(p string, mode int64) {
	for p != "." && p != "/" && p != "" {
		if _, ok := l[p]; !ok {
			l[p] = &entry{mode: mode, typ: tar.TypeDir}
		}
		p, mode = path.Dir(p), 0o755
	}
}

func (l layer) file(p string, mode int64, content []byte) {
	p = path.Clean(strings.TrimPrefix(p, "/"))
	l.dir(path.Dir(p), 0o755)
	l[p] = &entry{mode: mode, typ: tar.TypeReg, content: content}
}

func (l layer) symlink(p, target string) {
	p = path.Clean(strings.TrimPrefix(p, "/"))
	l.dir(path.Dir(p), 0o755)
	l[p] = &entry{mode: 0o777, typ: tar.TypeSymlink, linkTo: target}
}

// addBusybox installs the binary at /bin/busybox, a symlink per applet at the path busybox
// itself reports, and the few files a shell image is expected to have.
func (l layer) addBusybox(bin string) error {
	content, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	l.file("bin/busybox", 0o755, content)
	out, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %w", bin, err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "bin/busybox" {
			l.symlink(applet, "/bin/busybox")
		}
	}
	l.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	l.file("etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\n"))
	l.dir("root", 0o700)
	return nil
}

// tarball returns the uncompressed layer tar, entries in path order.
func (l layer) tarball() ([]byte, error) {
	paths := make([]string, 0, len(l))
	for p := range l {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := l[p]
		h := &tar.Header{Name: p, Mode: e.mode, Typeflag: e.typ, Linkname: e.linkTo, ModTime: epoch, Format: tar.FormatPAX}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(e.content))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.content); err != nil {
			return nil, err
		}
	}
	err := tw.Close()
	return buf.Bytes(), err
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// layout collects the blobs and index of an OCI image layout before it is written out.
type layout struct {
	blobs map[string][]byte
	index []byte
}

func (o *layout) blob(mediaType string, b []byte) descriptor {
	d := digestOf(b)
	o.blobs[d] = b
	return descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

func build(name string, l layer, entrypoint, cmd, env []string) (*layout, error) {
	// The OCI ref name carries only the tag (what `skopeo copy oci:DIR:TAG` looks up).
	tag := "latest"
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		tag = name[i+1:]
	}
	raw, err := l.tarball()
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}

	o := &layout{blobs: map[string][]byte{}}
	layerDesc := o.blob(mediaTypeLayer, gz.Bytes())
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config": struct {
			Entrypoint []string `json:",omitempty"`
			Cmd        []string `json:",omitempty"`
			Env        []string `json:",omitempty"`
			WorkingDir string
		}{entrypoint, cmd, env, "/"},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{digestOf(raw)}},
		"history": []map[string]string{{"created_by": "nodeagent hack/imagebuild"}},
	})
	if err != nil {
		return nil, err
	}
	configDesc := o.blob(mediaTypeConfig, config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeManifest,
		"config":        configDesc,
		"layers":        []descriptor{layerDesc},
	})
	if err != nil {
		return nil, err
	}
	manifestDesc := o.blob(mediaTypeManifest, manifest)
	manifestDesc.Platform = &platform{Architecture: "amd64", OS: "linux"}
	manifestDesc.Annotations = map[string]string{annotationRefName: tag, annotationImageName: name}
	o.index, err = json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeIndex,
		"manifests":     []descriptor{manifestDesc},
	})
	return o, err
}

// files lists the layout's files in a stable order, paths relative to the layout root.
func (o *layout) files() ([]string, map[string][]byte) {
	content := map[string][]byte{
		"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json": o.index,
	}
	names := []string{"oci-layout", "index.json"}
	var blobs []string
	for d, b := range o.blobs {
		p := "blobs/sha256/" + strings.TrimPrefix(d, "sha256:")
		content[p] = b
		blobs = append(blobs, p)
	}
	sort.Strings(blobs)
	return append(names, blobs...), content
}

func (o *layout) writeDir(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	names, content := o.files()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), content[n], 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (o *layout) writeTar(file string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: epoch}); err != nil {
			return err
		}
	}
	names, content := o.files()
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(content[n])), ModTime: epoch}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, bytes.NewReader(content[n])); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(file, buf.Bytes(), 0o644)
}

func run() error {
	var (
		name    = flag.String("name", "", "full image reference, e.g. nodeagent.local/busybox:1.36 (required)")
		out     = flag.String("out", "", "OCI image layout directory to write (required)")
		tarFile = flag.String("tar", "", "also write the layout as this tar archive")
		busybox = flag.String("busybox", "", "static busybox binary to install with its applet symlinks")
	)
	var adds, entrypoint, cmd, env listFlag
	flag.Var(&adds, "add", "SRC=DEST: copy host file SRC to DEST in the image, keeping its mode (repeatable)")
	flag.Var(&entrypoint, "entrypoint", "one entrypoint argument (repeatable)")
	flag.Var(&cmd, "cmd", "one cmd argument (repeatable)")
	flag.Var(&env, "env", "K=V environment entry (repeatable)")
	flag.Parse()
	if *name == "" || *out == "" || flag.NArg() != 0 {
		flag.Usage()
		return errors.New("-name and -out are required")
	}

	l := layer{}
	l.dir("tmp", 0o1777)
	if *busybox != "" {
		if err := l.addBusybox(*busybox); err != nil {
			return fmt.Errorf("add busybox: %w", err)
		}
	}
	for _, a := range adds {
		src, dest, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("-add %q: want SRC=DEST", a)
		}
		st, err := os.Stat(src)
		if err != nil {
			return err
		}
		content, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		l.file(dest, int64(st.Mode().Perm()), content)
	}

	o, err := build(*name, l, entrypoint, cmd, env)
	if err != nil {
		return fmt.Errorf("build %s: %w", *name, err)
	}
	if err := o.writeDir(*out); err != nil {
		return fmt.Errorf("write layout %s: %w", *out, err)
	}
	if *tarFile != "" {
		if err := o.writeTar(*tarFile); err != nil {
			return fmt.Errorf("write archive %s: %w", *tarFile, err)
		}
	}
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}
