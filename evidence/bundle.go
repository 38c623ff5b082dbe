package evidence

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// BundleVersion is the first line of every bundle.
const BundleVersion = "certmail-bundle/1"

// Bundle is everything an arbiter needs about one label, in one file: the evidence notes, the
// verifier keys, the log checkpoint and inclusion proofs once the log has them, and optional
// material (the message, a ciphertext, a key) the judges check hashes against.
//
// The file is canonical text with length-prefixed blocks, so it carries arbitrary bytes:
//
//	certmail-bundle/1
//	label <label>
//	key <verifier key>                  sorted, at least one
//	note <n>\n<n bytes>\n               in order, at least one
//	checkpoint <n>\n<n bytes>\n         at most one
//	proof <note> <leaf index> <k>\n<k lines of base64 hashes>   increasing note index
//	item <name> <n>\n<n bytes>\n        sorted by name
//	end
type Bundle struct {
	Label      Label
	Keys       []string
	Notes      []*Note
	Checkpoint []byte
	Proofs     []Proof
	Items      []Item
}

// Proof is the inclusion proof of note Notes[Note] at leaf Index in the bundle's checkpoint.
type Proof struct {
	Note   int
	Index  uint64
	Hashes []Hash
}

// Item is named material carried for the judges.
type Item struct {
	Name string
	Data []byte
}

// Names of the items judges use.
const (
	ItemMessage    = "message"    // M, the exact stored bytes
	ItemCiphertext = "ciphertext" // C or c
	ItemSecret     = "secret"     // K
	ItemCleartext  = "cleartext"  // AGHP cleartext
	ItemChallenge  = "challenge"  // AGHP q
	ItemResponse   = "response"   // AGHP r
)

// Item returns the data of the named item.
func (b *Bundle) Item(name string) ([]byte, bool) {
	for _, it := range b.Items {
		if it.Name == name {
			return it.Data, true
		}
	}
	return nil, false
}

// SetItem adds or replaces a named item, keeping the items sorted.
func (b *Bundle) SetItem(name string, data []byte) {
	b.Items = slices.DeleteFunc(b.Items, func(it Item) bool { return it.Name == name })
	i, _ := slices.BinarySearchFunc(b.Items, name, func(it Item, n string) int { return strings.Compare(it.Name, n) })
	b.Items = slices.Insert(b.Items, i, Item{name, bytes.Clone(data)})
}

// AddKey adds a verifier key, keeping keys sorted and unique.
func (b *Bundle) AddKey(vkey string) {
	if i, found := slices.BinarySearch(b.Keys, vkey); !found {
		b.Keys = slices.Insert(b.Keys, i, vkey)
	}
}

// Encode writes the canonical bundle file.
func (b *Bundle) Encode() ([]byte, error) {
	if err := b.validate(); err != nil {
		return nil, err
	}
	var w bytes.Buffer
	fmt.Fprintf(&w, "%s\nlabel %s\n", BundleVersion, b.Label)
	for _, k := range b.Keys {
		fmt.Fprintf(&w, "key %s\n", k)
	}
	block := func(head string, data []byte) {
		fmt.Fprintf(&w, "%s %d\n", head, len(data))
		w.Write(data)
		w.WriteByte('\n')
	}
	for _, n := range b.Notes {
		block("note", n.Bytes())
	}
	if b.Checkpoint != nil {
		block("checkpoint", b.Checkpoint)
	}
	for _, p := range b.Proofs {
		fmt.Fprintf(&w, "proof %d %d %d\n", p.Note, p.Index, len(p.Hashes))
		for _, h := range p.Hashes {
			w.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
		}
	}
	for _, it := range b.Items {
		block("item "+it.Name, it.Data)
	}
	w.WriteString("end\n")
	return w.Bytes(), nil
}

func (b *Bundle) validate() error {
	if b.Label.IsZero() {
		return malformed("bundle: no label")
	}
	if len(b.Keys) == 0 {
		return malformed("bundle: no verifier key")
	}
	for i, k := range b.Keys {
		if err := checkVerifierKey(k); err != nil {
			return malformed("bundle: key %d: %v", i+1, err)
		}
		if i > 0 && b.Keys[i-1] >= k {
			return malformed("bundle: keys not sorted and unique at %q", k)
		}
	}
	if len(b.Notes) == 0 {
		return malformed("bundle: no note")
	}
	for i, n := range b.Notes {
		if n == nil || n.raw == nil {
			return malformed("bundle: note %d is empty", i+1)
		}
	}
	if j, i := repeated(b.Notes); i >= 0 {
		return malformed("bundle: note %d repeats note %d", i+1, j+1)
	}
	for i, p := range b.Proofs {
		if p.Note < 0 || p.Note >= len(b.Notes) || i > 0 && b.Proofs[i-1].Note >= p.Note {
			return malformed("bundle: proof %d: note index %d out of range or out of order", i+1, p.Note)
		}
		if len(p.Hashes) > 64 {
			return malformed("bundle: proof %d: %d hashes is more than any tree needs", i+1, len(p.Hashes))
		}
	}
	if len(b.Proofs) > 0 && b.Checkpoint == nil {
		return malformed("bundle: proofs without a checkpoint")
	}
	for i, it := range b.Items {
		if err := checkToken(it.Name); err != nil {
			return malformed("bundle: item %d: %v", i+1, err)
		}
		if i > 0 && b.Items[i-1].Name >= it.Name {
			return malformed("bundle: items not sorted and unique at %q", it.Name)
		}
	}
	return nil
}

// repeated finds a note that repeats an earlier one, note i repeating note j, or gives i = -1.
// A bundle has a few notes: comparing their bytes costs less than hashing them, up to a few
// dozen.
func repeated(notes []*Note) (j, i int) {
	if len(notes) <= 32 {
		for i := range notes {
			for j := range i {
				if bytes.Equal(notes[j].raw, notes[i].raw) {
					return j, i
				}
			}
		}
		return -1, -1
	}
	seen := map[Hash]int{}
	for i, n := range notes {
		h := n.Leaf()
		if j, dup := seen[h]; dup {
			return j, i
		}
		seen[h] = i
	}
	return -1, -1
}

// bundleReader walks the bundle bytes line by line and block by block.
type bundleReader struct {
	data []byte
	off  int
}

func (r *bundleReader) line() (string, error) {
	i := bytes.IndexByte(r.data[r.off:], '\n')
	if i < 0 {
		return "", malformed("bundle: truncated at byte %d (no line end)", r.off)
	}
	s := string(r.data[r.off : r.off+i])
	r.off += i + 1
	return s, nil
}

func (r *bundleReader) peek() string {
	i := bytes.IndexByte(r.data[r.off:], '\n')
	if i < 0 {
		return string(r.data[r.off:])
	}
	return string(r.data[r.off : r.off+i])
}

func (r *bundleReader) block(size string) ([]byte, error) {
	n, err := strconv.Atoi(size)
	if err != nil || n < 0 || strconv.Itoa(n) != size {
		return nil, malformed("bundle: bad length %q", size)
	}
	if n > len(r.data)-r.off-1 {
		return nil, malformed("bundle: truncated: block of %d bytes at byte %d runs past the end", n, r.off)
	}
	b := r.data[r.off : r.off+n]
	r.off += n
	if r.data[r.off] != '\n' {
		return nil, malformed("bundle: block at byte %d is not followed by a line end", r.off-n)
	}
	r.off++
	return b, nil
}

// ParseBundle parses a canonical bundle file. Parsing then encoding gives the input back.
func ParseBundle(data []byte) (*Bundle, error) {
	r := &bundleReader{data: data}
	first, err := r.line()
	if err != nil {
		return nil, err
	}
	if first != BundleVersion {
		if strings.HasPrefix(first, "certmail-bundle/") {
			return nil, malformed("bundle: unsupported version %q (this certmail reads %s)", first, BundleVersion)
		}
		return nil, malformed("bundle: not a certmail bundle (first line %q)", first)
	}
	b := &Bundle{}
	l, err := r.line()
	if err != nil {
		return nil, err
	}
	ls, ok := strings.CutPrefix(l, "label ")
	if !ok {
		return nil, malformed("bundle: second line %q is not the label", l)
	}
	if b.Label, err = ParseLabel(ls); err != nil {
		return nil, malformed("bundle: %v", err)
	}
	for strings.HasPrefix(r.peek(), "key ") {
		l, err := r.line()
		if err != nil {
			return nil, err
		}
		b.Keys = append(b.Keys, strings.TrimPrefix(l, "key "))
	}
	for strings.HasPrefix(r.peek(), "note ") {
		l, err := r.line()
		if err != nil {
			return nil, err
		}
		raw, err := r.block(strings.TrimPrefix(l, "note "))
		if err != nil {
			return nil, err
		}
		n, err := ParseNote(raw)
		if err != nil {
			return nil, fmt.Errorf("bundle note %d: %w", len(b.Notes)+1, err)
		}
		b.Notes = append(b.Notes, n)
	}
	if strings.HasPrefix(r.peek(), "checkpoint ") {
		l, err := r.line()
		if err != nil {
			return nil, err
		}
		if b.Checkpoint, err = r.block(strings.TrimPrefix(l, "checkpoint ")); err != nil {
			return nil, err
		}
		b.Checkpoint = bytes.Clone(b.Checkpoint)
	}
	for strings.HasPrefix(r.peek(), "proof ") {
		p, err := r.proof()
		if err != nil {
			return nil, err
		}
		b.Proofs = append(b.Proofs, p)
	}
	for strings.HasPrefix(r.peek(), "item ") {
		l, err := r.line()
		if err != nil {
			return nil, err
		}
		name, size, ok := strings.Cut(strings.TrimPrefix(l, "item "), " ")
		if !ok {
			return nil, malformed("bundle: item line %q: want item NAME LENGTH", l)
		}
		data, err := r.block(size)
		if err != nil {
			return nil, err
		}
		b.Items = append(b.Items, Item{name, bytes.Clone(data)})
	}
	last, err := r.line()
	if err != nil {
		return nil, malformed("bundle: truncated: no end line")
	}
	if last != "end" {
		return nil, malformed("bundle: unexpected line %q (sections out of order, unknown, or no end line)", last)
	}
	if r.off != len(data) {
		return nil, malformed("bundle: %d bytes after the end line", len(data)-r.off)
	}
	if err := b.validate(); err != nil {
		return nil, err
	}
	return b, nil
}

func (r *bundleReader) proof() (Proof, error) {
	l, err := r.line()
	if err != nil {
		return Proof{}, err
	}
	f := strings.Fields(strings.TrimPrefix(l, "proof "))
	if len(f) != 3 || strings.Join(f, " ") != strings.TrimPrefix(l, "proof ") {
		return Proof{}, malformed("bundle: proof line %q: want proof NOTE INDEX COUNT", l)
	}
	var p Proof
	nums := make([]uint64, 3)
	for i, s := range f {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil || strconv.FormatUint(v, 10) != s {
			return Proof{}, malformed("bundle: proof line %q: bad number %q", l, s)
		}
		nums[i] = v
	}
	if nums[0] > 1<<20 || nums[2] > 64 {
		return Proof{}, malformed("bundle: proof line %q: out of range", l)
	}
	p.Note, p.Index = int(nums[0]), nums[1]
	for range nums[2] {
		hl, err := r.line()
		if err != nil {
			return Proof{}, err
		}
		h, err := base64.StdEncoding.DecodeString(hl)
		if err != nil || len(h) != 32 || base64.StdEncoding.EncodeToString(h) != hl {
			return Proof{}, malformed("bundle: proof of note %d: bad hash line %q", p.Note, hl)
		}
		p.Hashes = append(p.Hashes, Hash(h))
	}
	return p, nil
}
