package forward

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"sigs.k8s.io/knftables"
)

// batchingNFT is a knftables.Interface bound to ironlb's table whose Run sends consecutive
// element additions to one set as a single nft command ("add element inet ironlb m { a, b }").
// knftables writes one command per element; for a full sync of 200,000 elements, nft then
// spends about 40% less time (1.9 s instead of 3.2 s on the benchmark machine) with one command
// per set. Everything else (building, validating, listing, Check) is knftables'.
type batchingNFT struct {
	knftables.Interface
	path string // the nft binary
}

// NewInterface returns the knftables interface an Applier needs on a node: bound to ironlb's
// table and running the nft binary.
func NewInterface() (knftables.Interface, error) {
	nft, err := knftables.New(TableFamily, TableName)
	if err != nil {
		return nil, fmt.Errorf("opening nftables table %s %s: %w", TableFamily, TableName, err)
	}
	path, err := exec.LookPath("nft")
	if err != nil {
		return nil, fmt.Errorf("finding nft: %w", err)
	}
	return &batchingNFT{Interface: nft, path: path}, nil
}

// Run runs the transaction with nft -f -, element additions joined.
func (b *batchingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	text := tx.String()
	if strings.Contains(text, "# ERROR: ") {
		return b.Interface.Run(ctx, tx) // knftables reports the transaction's own error
	}
	return b.runText(ctx, joinElementAdds(text))
}

// textRunner runs nft commands given as text; the Applier uses it for full syncs, whose
// elements it writes directly (Ruleset.fullText).
type textRunner interface {
	runText(ctx context.Context, text string) error
}

var _ textRunner = (*batchingNFT)(nil)

func (b *batchingNFT) runText(ctx context.Context, text string) error {
	cmd := exec.CommandContext(ctx, b.path, "-f", "-")
	cmd.Stdin = strings.NewReader(text)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("running nft: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// joinElementAdds merges runs of lines "add element F T S { E }" with the same F T S into
// "add element F T S { E1, E2, ... }". Element keys, values and comments that ironlb writes
// hold no "," or "}", so the join is unambiguous.
func joinElementAdds(text string) string {
	var out strings.Builder
	out.Grow(len(text))
	prefix := "" // "add element F T S { " of the run being joined
	for line := range strings.Lines(text) {
		line = strings.TrimSuffix(line, "\n")
		p, elem, ok := splitElementAdd(line)
		switch {
		case ok && p == prefix:
			out.WriteString(", ")
			out.WriteString(elem)
			continue
		case prefix != "":
			out.WriteString(" }\n")
			prefix = ""
		}
		if ok {
			prefix = p
			out.WriteString(p)
			out.WriteString(elem)
			continue
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	if prefix != "" {
		out.WriteString(" }\n")
	}
	return out.String()
}

// splitElementAdd splits "add element F T S { E }" into "add element F T S { " and "E".
func splitElementAdd(line string) (prefix, elem string, ok bool) {
	if !strings.HasPrefix(line, "add element ") || !strings.HasSuffix(line, " }") {
		return "", "", false
	}
	i := strings.Index(line, " { ")
	if i < 0 {
		return "", "", false
	}
	return line[:i+3], line[i+3 : len(line)-2], true
}
