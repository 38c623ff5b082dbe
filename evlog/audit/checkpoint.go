package audit

import (
	"context"
	"fmt"

	"certmail/evidence"
)

// Checkpoint is a signed checkpoint as the log served it, and what it says.
type Checkpoint struct {
	evidence.Checkpoint
	Note []byte // the whole signed note
}

// CheckpointPath is where a tlog-tiles log keeps its latest checkpoint.
const CheckpointPath = "checkpoint"

// OpenCheckpoint checks a signed checkpoint against the agent's verifier key: the agent's key
// signed it and its origin is the agent's log. With no key it only parses the text.
func OpenCheckpoint(signed []byte, agentKey string) (*Checkpoint, error) {
	var c *evidence.Checkpoint
	var err error
	if agentKey == "" {
		c, err = evidence.CheckpointText(signed)
	} else {
		c, _, err = evidence.OpenCheckpoint(signed, []string{agentKey})
	}
	if err != nil {
		return nil, err
	}
	return &Checkpoint{Checkpoint: *c, Note: signed}, nil
}

// ReadCheckpoint reads the log's latest checkpoint and opens it as OpenCheckpoint does.
func ReadCheckpoint(ctx context.Context, src Source, agentKey string) (*Checkpoint, error) {
	signed, err := src.ReadFile(ctx, CheckpointPath)
	if err != nil {
		return nil, fmt.Errorf("audit: read the checkpoint of %s: %w", src, err)
	}
	c, err := OpenCheckpoint(signed, agentKey)
	if err != nil {
		return nil, fmt.Errorf("audit: the checkpoint of %s: %w", src, err)
	}
	return c, nil
}
