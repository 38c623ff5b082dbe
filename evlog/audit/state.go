package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"

	"certmail/durable"
	"certmail/evidence"
)

// StateVersion is the first line of a monitor's state file.
const StateVersion = "certmail-log-monitor/1"

// State is what a monitor remembers of one log between runs: the agent and where its log is, the
// agent's key it pinned on first contact, and the last checkpoint it proved consistent.
//
//	certmail-log-monitor/1
//	agent <the agent's URL>
//	log <the log's URL>
//	key <the agent's verifier key>
//	checkpoint <n>\n<n bytes: the signed checkpoint>\n
//	end
type State struct {
	Agent      string
	Log        string
	Key        string
	Checkpoint *Checkpoint
}

// Encode writes the state file.
func (s *State) Encode() []byte {
	var w textWriter
	w.WriteString(StateVersion + "\n")
	w.line("agent", s.Agent)
	w.line("log", s.Log)
	w.line("key", s.Key)
	w.block("checkpoint", s.Checkpoint.Note)
	w.WriteString("end\n")
	return w.Bytes()
}

// ParseState parses a state file and checks its checkpoint with its key. Parsing then encoding
// gives the input back.
func ParseState(data []byte) (*State, error) {
	r := &textReader{what: "monitor state", data: data}
	first, err := r.rawLine()
	if err != nil || first != StateVersion {
		return nil, r.errorf("not a certmail monitor state (want first line %s)", StateVersion)
	}
	s := &State{}
	for _, f := range []struct {
		key string
		v   *string
	}{{"agent", &s.Agent}, {"log", &s.Log}} {
		if *f.v, err = r.line(f.key); err != nil {
			return nil, err
		}
		if u, err := url.Parse(*f.v); err != nil || u.String() != *f.v || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, r.errorf("%s %q: want an http or https URL", f.key, *f.v)
		}
	}
	if s.Key, err = r.line("key"); err != nil {
		return nil, err
	}
	if _, err := evidence.NewKeys(s.Key); err != nil {
		return nil, r.errorf("%v", err)
	}
	signed, err := r.block("checkpoint")
	if err != nil {
		return nil, err
	}
	if s.Checkpoint, err = OpenCheckpoint(signed, s.Key); err != nil {
		return nil, r.errorf("%v", err)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return s, nil
}

// LoadState reads a state file; a file that does not exist yet gives nil and no error.
func LoadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s, err := ParseState(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Save replaces the state file so that a crash leaves the old state or the new one, never a
// part: a monitor that forgot its last checkpoint could be shown a fork and not see it.
func (s *State) Save(path string) error {
	return durable.WriteAtomic(path, s.Encode(), 0o600)
}
