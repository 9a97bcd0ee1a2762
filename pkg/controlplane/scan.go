package controlplane

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

// scanner is one full pass over the manifest directory, plus the memory that passes share:
// the last parse of each file (so unchanged files are neither decoded nor reported again),
// when each pod was first seen, and which problems were already logged. Only the goroutine
// running FileSource.Run uses it, so it has no lock.
type scanner struct {
	dir      string
	nodeName string
	log      *logrus.Entry
	now      func() time.Time
	// maxFileBytes is the size above which a file is not read (FileSourceConfig.MaxFileBytes).
	maxFileBytes int64

	files      map[string]*fileState   // by file name; the files of the last scan
	firstSeen  map[types.UID]time.Time // UIDs of the last scan's pods
	duplicates sets.Set[string]        // duplicate pods logged, as of the last scan
	// configDuplicates is the duplicate ConfigMaps and Secrets logged, as of the last scan.
	configDuplicates sets.Set[string]
	configs          configSet // the last scan's ConfigMaps and Secrets
	dirErr           string    // the directory's reported read error; "" when readable
	// recheck, when non-zero, is how soon the last scan wants another: a file that did not
	// parse was still being written.
	recheck time.Duration
}

// settleTime is how long after its last modification a file that does not parse is taken
// for one being written (an editor saving in place, a copy in progress): it keeps the pods
// of its last good content and is looked at again, instead of dropping running pods over a
// half-written file. Past it, the error is real and reported.
const settleTime = time.Second

// fileState is what the scanner remembers about one file.
type fileState struct {
	sum     [sha256.Size]byte // of the content parsed; zero after a read error
	parsed  parsedFile
	readErr string // the read error last logged for this file
}

func newScanner(dir, nodeName string, log *logrus.Entry, now func() time.Time) *scanner {
	return &scanner{
		dir:          dir,
		nodeName:     nodeName,
		log:          log,
		now:          now,
		maxFileBytes: DefaultMaxFileBytes,
		files:        map[string]*fileState{},
		firstSeen:    map[types.UID]time.Time{},
		duplicates:   sets.New[string](),
	}
}

// isManifestName says whether a directory entry is a manifest: *.yaml, *.yml or *.json, and
// not hidden. Editors' backups and swap files ("web.yaml~", ".web.yaml.swp", "#web.yaml#")
// and atomic-write temporaries ("web.yaml.tmp") fall out by the same rule.
func isManifestName(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// scan reads the whole directory and returns the current set of valid pods, ordered by file
// name and document index. The pods are the scanner's own: callers copy before handing out.
// The ConfigMaps and Secrets it found are left in sc.configs. A missing or unreadable
// directory is an empty set.
func (sc *scanner) scan() []*v1.Pod {
	sc.recheck = 0
	names := sc.listManifests()
	current := make(map[string]*fileState, len(names))
	for _, name := range names {
		if st := sc.readFile(name); st != nil {
			current[name] = st
		}
	}
	sc.files = current
	pods := sc.assemble(names)
	sc.configs = sc.assembleConfigs(names)
	return pods
}

// listManifests returns the manifest file names in the directory, sorted.
func (sc *scanner) listManifests() []string {
	entries, err := os.ReadDir(sc.dir)
	if err != nil {
		if msg := err.Error(); msg != sc.dirErr {
			sc.dirErr = msg
			l := sc.log.WithField("dir", sc.dir)
			if errors.Is(err, fs.ErrNotExist) {
				l.Warn("manifest directory does not exist; waiting for it to appear")
			} else {
				l.WithError(err).Error("cannot read manifest directory; treating it as empty")
			}
		}
		return nil
	}
	if sc.dirErr != "" {
		sc.dirErr = ""
		sc.log.WithField("dir", sc.dir).Info("manifest directory is readable")
	}
	var names []string // ReadDir sorts by name
	for _, e := range entries {
		if !isManifestName(e.Name()) || e.IsDir() {
			continue
		}
		if !e.Type().IsRegular() {
			// Follow symlinks (a manifest may be a link into a config checkout); skip what is
			// in the end not a regular file. A link that leads nowhere stays in, so that
			// reading it reports the problem.
			info, err := os.Stat(filepath.Join(sc.dir, e.Name()))
			if err == nil && !info.Mode().IsRegular() {
				continue
			}
		}
		names = append(names, e.Name())
	}
	return names
}

// readFile reads and, if its content changed, parses one file, logging its problems once per
// distinct content. It returns nil when the file has gone. A file over the size limit is an
// unreadable file.
//
// Memory: the file's bytes are dropped on return (only their hash and what was parsed from
// them are kept), and the size limit bounds what one parse allocates to a few MiB, which the
// runtime gives back to the OS in the background. debug.FreeOSMemory is not called: it would
// only hurry that along, at the price of a full collection per parse, which a file rewritten
// in a loop could then trigger ten times a second.
func (sc *scanner) readFile(name string) *fileState {
	st := sc.files[name]
	if st == nil {
		st = &fileState{}
	}
	l := sc.log.WithField("file", name)
	p := filepath.Join(sc.dir, name)
	data, err := readManifest(p, name, sc.maxFileBytes)
	if errors.Is(err, fs.ErrNotExist) {
		if _, lerr := os.Lstat(p); lerr != nil {
			return nil // deleted since the listing; its own event follows
		}
		// The name is there but leads nowhere: a dangling symlink, which the user wants to
		// hear about like any other unreadable manifest.
	}
	if err != nil {
		// Its pods drop out until it can be read again, predictable rather than stale.
		if msg := err.Error(); msg != st.readErr {
			l.WithError(err).Error("cannot read manifest file; its pods are removed")
		}
		return &fileState{readErr: err.Error()}
	}
	sum := sha256.Sum256(data)
	if st.readErr == "" && st.sum == sum {
		return st
	}
	parsed := parseFile(name, data, sc.nodeName, sc.now())
	// A file caught between truncate and write reads empty; like one that does not parse, a
	// fresh empty file keeps its last content's objects until it settles, so an in-place
	// rewrite neither drops its pods for a moment nor repeats its warnings.
	truncated := len(bytes.TrimSpace(data)) == 0 && (len(st.parsed.pods) > 0 || len(st.parsed.configs) > 0)
	if len(parsed.errs) > 0 || truncated {
		if info, err := os.Stat(p); err == nil {
			if age := sc.now().Sub(info.ModTime()); age < settleTime {
				wait := settleTime - age
				if sc.recheck == 0 || wait < sc.recheck {
					sc.recheck = wait
				}
				// Keep the last good parse and its sum: a scan that finds that content
				// back changes and logs nothing; any other content is parsed again.
				return &fileState{sum: st.sum, parsed: st.parsed}
			}
		}
	}
	for _, err := range parsed.errs {
		logManifestError(l, err)
	}
	for _, ig := range parsed.ignored {
		l.WithFields(logrus.Fields{
			"document":   ig.document,
			"kind":       ig.kind,
			"apiVersion": ig.apiVersion,
		}).Warn("manifest document ignored: kind not supported yet")
	}
	return &fileState{sum: sum, parsed: parsed}
}

// logManifestError logs one bad document: the fields say where, the error what.
func logManifestError(l *logrus.Entry, err error) {
	var me *ManifestError
	if errors.As(err, &me) {
		l.WithField("document", me.Document).WithError(me.Err).Error("bad manifest document; skipped")
		return
	}
	l.WithError(err).Error("bad manifest document; skipped")
}

// assemble builds the set from the parsed files. Two documents defining the same
// namespace/name: the first in file-name order wins, the other is skipped and logged (once).
func (sc *scanner) assemble(names []string) []*v1.Pod {
	var pods []*v1.Pod
	definedBy := map[string]string{} // pod key -> "file#document"
	duplicates := sets.New[string]()
	firstSeen := make(map[types.UID]time.Time, len(sc.firstSeen))
	for _, name := range names {
		st := sc.files[name]
		if st == nil {
			continue
		}
		for _, p := range st.parsed.pods {
			key := podKey(p.pod)
			loc := name + "#" + strconv.Itoa(p.document)
			if first, ok := definedBy[key]; ok {
				id := key + " " + loc + " " + string(p.pod.UID) + " " + first
				duplicates.Insert(id)
				if !sc.duplicates.Has(id) {
					sc.log.WithFields(logrus.Fields{"file": name, "document": p.document, "definedBy": first}).
						WithError(duplicatePodError(p, first)).Error("duplicate manifest pod; skipped")
				}
				continue
			}
			definedBy[key] = loc

			seen, ok := sc.firstSeen[p.pod.UID]
			if !ok {
				seen = sc.now()
			}
			firstSeen[p.pod.UID] = seen
			p.pod.Annotations[AnnotationConfigSeen] = seen.UTC().Format(time.RFC3339Nano)
			pods = append(pods, p.pod)
		}
	}
	sc.duplicates = duplicates
	sc.firstSeen = firstSeen
	return pods
}

// assembleConfigs builds the ConfigMaps and Secrets from the parsed files. Duplicates are
// handled as for pods: the first in file-name order wins, the other is skipped and logged
// (once).
func (sc *scanner) assembleConfigs(names []string) configSet {
	var set configSet
	duplicates := sets.New[string]()
	definedBy := map[string]string{} // config key -> "file#document"
	for _, name := range names {
		st := sc.files[name]
		if st == nil {
			continue
		}
		for _, c := range st.parsed.configs {
			key := c.key()
			loc := name + "#" + strconv.Itoa(c.document)
			if first, ok := definedBy[key]; ok {
				id := key + " " + loc + " " + string(c.meta().UID) + " " + first
				duplicates.Insert(id)
				if !sc.configDuplicates.Has(id) {
					meta := c.meta()
					sc.log.WithFields(logrus.Fields{"file": name, "document": c.document, "kind": c.kind(), "definedBy": first}).
						WithError(duplicateError(c.kind(), meta.Namespace+"/"+meta.Name, meta.Name, first)).
						Error("duplicate manifest object; skipped")
				}
				continue
			}
			definedBy[key] = loc
			set.add(c)
		}
	}
	sc.configDuplicates = duplicates
	return set
}
