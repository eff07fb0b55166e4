package jobrow

import (
	"cmp"
	"slices"
)

// IDJob is an outbox row's id and job.
type IDJob struct {
	ID  int64
	Job string
}

// JobsOf lists the jobs of rows, each once, in order of first appearance.
func JobsOf(rows []IDJob) []string {
	var jobs []string
	for _, r := range rows {
		if !slices.Contains(jobs, r.Job) {
			jobs = append(jobs, r.Job)
		}
	}
	return jobs
}

// InOrder decides which of the candidate reports cands a drainer may
// claim, given all the owed reports of their jobs: a candidate only with
// every older report of its job, so that a job's reports are never split
// between two drainers, nor sent out of order. It returns their ids,
// ascending; all is sorted by id in place.
func InOrder(cands, all []IDJob) []int64 {
	isCand := make(map[int64]bool, len(cands))
	for _, c := range cands {
		isCand[c.ID] = true
	}
	slices.SortFunc(all, func(a, b IDJob) int { return cmp.Compare(a.ID, b.ID) })
	blocked := map[string]bool{} // a job with an older report that is not a candidate
	keep := []int64{}
	for _, r := range all {
		switch {
		case blocked[r.Job]:
		case isCand[r.ID]:
			keep = append(keep, r.ID)
		default:
			blocked[r.Job] = true
		}
	}
	return keep
}
