// TEMPORARY: replaced by the live helper's executor/live.go

package executor

import (
	"errors"
	"time"
)

// LogEvent is one event of a running job's live log. IDs increase from 1
// within a job.
type LogEvent struct {
	ID          int64     `json:"id"`
	Kind        string    `json:"kind"` // "step" | "line" | "done" | "end"
	Step        int       `json:"step,omitempty"`
	Name        string    `json:"name,omitempty"`
	Line        string    `json:"line,omitempty"`
	Exit        int       `json:"exit,omitempty"`
	Millis      int64     `json:"ms,omitempty"`
	State       State     `json:"state,omitempty"`
	Description string    `json:"description,omitempty"`
	Time        time.Time `json:"time"`
}

// ErrFinal says a job cannot be cancelled: it has ended.
var ErrFinal = errors.New("job already final")
