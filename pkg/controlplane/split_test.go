package controlplane

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// splitWithYAMLReader is how files were cut before (and how kubectl cuts them): documents
// with their lines as the line reader returns them, and "ERR" for a bad separator.
func splitWithYAMLReader(data []byte) []string {
	var out []string
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		chunk, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			out = append(out, "ERR")
			if errors.As(err, new(utilyaml.YAMLSyntaxError)) {
				continue
			}
			return out
		}
		out = append(out, string(chunk))
	}
}

// asLineReaderWould writes a span as the line reader returns it: "\r\n" read as "\n", and a
// last line without its newline given one.
func asLineReaderWould(b []byte) string {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	if !bytes.HasSuffix(b, []byte("\n")) {
		b = append(b, '\n')
	}
	return string(b)
}

func TestYAMLDocumentsCutWhereYAMLReaderCuts(t *testing.T) {
	pod := podYAML("web")
	inputs := map[string]string{
		"one document":                    pod,
		"no trailing newline":             "a: 1\nb: 2",
		"leading separator":               "---\n" + pod,
		"separators in a row":             "---\n---\n" + pod + "---\n---\n" + pod,
		"trailing separator":              pod + "---\n",
		"trailing separator, no newline":  pod + "---",
		"separator with a comment":        pod + "--- # next\n" + pod,
		"separator with trailing spaces":  pod + "---   \n" + pod,
		"bad separator drops its lines":   pod + "--- x\n" + pod + "---\n" + pod,
		"bad separator first":             "--- x\n" + pod,
		"two bad separators":              "a: 1\n--- x\n--- y\nb: 2\n",
		"four dashes are a bad separator": pod + "----\n" + pod,
		"indented dashes are content":     pod + "  ---\n" + pod,
		"CRLF line ends":                  "a: 1\r\n---\r\nb: 2\r\n",
		"CRLF separator with a comment":   "a: 1\r\n--- # c\r\nb: 2",
		"blank lines only":                "\n\n\n",
		"blank document between":          "a: 1\n---\n\n---\nb: 2\n",
		"empty":                           "",
		"document start marker content":   "--- !tag\na: 1\n",
	}
	// And a few thousand files made of the lines that matter, in any order, with any line ends.
	lines := []string{"---", "--- # c", "---  ", "--- x", "----", " ---", "a: 1", "", "# c", "- b", "---\r"}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		var b strings.Builder
		for range rnd.IntN(8) {
			b.WriteString(lines[rnd.IntN(len(lines))])
			b.WriteString([]string{"\n", "\r\n", "\n"}[rnd.IntN(3)])
		}
		if rnd.IntN(2) == 0 {
			b.WriteString(lines[rnd.IntN(len(lines))])
		}
		inputs[fmt.Sprintf("generated %d", i)] = b.String()
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			data := []byte(in)
			var got []string
			docs := newYAMLDocuments(data)
			for {
				span, ok, err := docs.next()
				if !ok {
					break
				}
				if err != nil {
					got = append(got, "ERR")
					continue
				}
				// The span is the file's own bytes, and it says where they are.
				if !bytes.Equal(data[span.start:span.start+len(span.data)], span.data) {
					t.Errorf("span at %d is not the file's bytes there", span.start)
				}
				if want := 1 + bytes.Count(data[:span.start], []byte("\n")); span.line != want {
					t.Errorf("span at %d says line %d, want %d", span.start, span.line, want)
				}
				got = append(got, asLineReaderWould(span.data))
			}
			if want := splitWithYAMLReader(data); !slices.Equal(got, want) {
				t.Errorf("documents =\n  %q\nYAMLReader's =\n  %q", got, want)
			}
		})
	}
}

func TestCRLFManifestKeepsItsUID(t *testing.T) {
	// The splitter hands the parser "\r\n" where the line reader gave "\n": the YAML parser
	// folds line breaks itself, so the pod, and so its content-derived UID, are unchanged.
	lf := podYAML("web") + "    command: [\"sh\", \"-c\", \"echo a\n      b\"]\n    args:\n    - |\n      line1\n      line2\n"
	crlf := string(bytes.ReplaceAll([]byte(lf), []byte("\n"), []byte("\r\n")))
	a, errs := ParseManifests("lf.yaml", []byte(lf), testNode)
	if len(errs) > 0 || len(a) != 1 {
		t.Fatalf("LF manifest: %d pods, errors %q", len(a), errorStrings(errs))
	}
	b, errs := ParseManifests("crlf.yaml", []byte(crlf), testNode)
	if len(errs) > 0 || len(b) != 1 {
		t.Fatalf("CRLF manifest: %d pods, errors %q", len(b), errorStrings(errs))
	}
	if a[0].UID != b[0].UID {
		t.Errorf("UID with CRLF line ends %s, with LF %s: want the same", b[0].UID, a[0].UID)
	}
	if got := b[0].Spec.Containers[0].Args; !slices.Equal(got, []string{"line1\nline2\n"}) {
		t.Errorf("args = %q, want the block scalar with \\n line ends", got)
	}
}
