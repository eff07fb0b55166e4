package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deployhook/deployhook/executor"
)

// crashChildEnv, when set to a journal path, turns TestStore_killDurability
// into the child that writes to that journal until it is killed.
const crashChildEnv = "DEPLOYHOOK_STORE_CRASH_CHILD"

// killAfter is how many acknowledged jobs the parent waits for before SIGKILL.
const killAfter = 150

// TestStore_killDurability runs a child process (this test binary again) that
// writes jobs, steps and reports as fast as it can and acknowledges on a pipe
// every job whose CreateJob returned; the parent kills it with SIGKILL mid-way,
// then opens the journal: every acknowledged job must be there, and the file
// must pass SQLite's integrity and foreign key checks.
func TestStore_killDurability(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(t, path)
		return
	}
	path := filepath.Join(t.TempDir(), "journal.db")
	acks, ackw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer acks.Close()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestStore_killDurability$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.ExtraFiles = []*os.File{ackw} // fd 3 in the child
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ackw.Close()

	var acked []string
	killed := false
	sc := bufio.NewScanner(acks)
	for sc.Scan() {
		id, ok := strings.CutPrefix(sc.Text(), "created ")
		if !ok {
			t.Fatalf("child wrote %q on the ack pipe", sc.Text())
		}
		acked = append(acked, id)
		if len(acked) == killAfter && !killed {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
		// Read on: acknowledgements written before the kill are still in the pipe.
	}
	err = cmd.Wait()
	t.Logf("child output:\n%s", stderr.Bytes())
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v after %d jobs, want it killed by SIGKILL mid-way", err, len(acked))
	}
	t.Logf("child killed after %d acknowledged jobs", len(acked))

	s := mustOpen(t, path)
	for _, id := range acked {
		j, err := s.Job(t.Context(), id)
		if err != nil {
			t.Errorf("acknowledged job %s lost: %v", id, err)
			continue
		}
		if j.Trigger.Delivery != "delivery-"+id {
			t.Errorf("job %s has delivery %q, want %q", id, j.Trigger.Delivery, "delivery-"+id)
		}
	}
	var check string
	if err := s.r.QueryRowContext(t.Context(), "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check after kill = %q, %v; want ok", check, err)
	}
	rows, err := s.r.QueryContext(t.Context(), "PRAGMA foreign_key_check")
	if err != nil {
		t.Fatal(err)
	}
	if rows.Next() {
		t.Error("foreign_key_check after kill found dangling rows")
	}
	rows.Close()
	// The journal is still writable, and still deduplicates the acknowledged.
	dup := queuedJob("after", "production", executor.StateQueued, time.Now())
	dup.Trigger.Delivery = "delivery-" + acked[0]
	if existing, err := s.CreateJob(t.Context(), dup); !errors.Is(err, executor.ErrDuplicate) || existing != acked[0] {
		t.Errorf("CreateJob(duplicate of %s) after kill = %q, %v; want ErrDuplicate", acked[0], existing, err)
	}
}

// crashChild writes to the journal at path until killed; it acknowledges each
// job on fd 3 once CreateJob has returned.
func crashChild(t *testing.T, path string) {
	acks := os.NewFile(3, "acks")
	s := mustOpen(t, path)
	ctx := t.Context()
	for i := range 1_000_000 {
		id := fmt.Sprintf("job-%07d", i)
		j := queuedJob(id, "production", executor.StateQueued, time.Now())
		j.Trigger.Delivery = "delivery-" + id
		if _, err := s.CreateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(acks, "created %s\n", id); err != nil {
			t.Fatal(err)
		}
		// More writes after the acknowledgement, so the kill can land inside
		// any kind of transaction.
		if err := s.AddStep(ctx, executor.StepRun{Job: id, Seq: 1, Name: "fetch", Output: strings.Repeat("o", 4096)}); err != nil {
			t.Fatal(err)
		}
		j.State, j.Started = executor.StateRunning, time.Now()
		if err := s.UpdateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
		if err := s.Owe(ctx, executor.Report{Job: id, State: executor.StateRunning}); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("child was not killed")
}
