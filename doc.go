// Command deployhook deploys a repository to a Google Compute Engine VM when GitHub
// says so.
//
// GitHub sends a signed webhook (a push to the deployed branch, a CI workflow run
// that passed, a manual workflow_dispatch). deployhook verifies the signature,
// matches the delivery to a target, and queues one deploy (server, webhook). The
// executor runs the target's steps on the VM over SSH through Identity-Aware Proxy
// (executor/remote, executor/iap, executor/gce), verifies the result, rolls back
// when a step fails, and reports every state to GitHub as a commit status and a
// GitHub Deployment (executor/ghstatus), with the SQLite journal (executor/store)
// as the source of truth across restarts.
//
// Usage:
//
//	deployhook serve   --config FILE [--listen ADDR] [--data-dir DIR]
//	deployhook deploy  --config FILE --target NAME [--sha SHA [--force]]
//	deployhook rollback --config FILE --target NAME [--to SHA [--force]]
//	deployhook status  --config FILE [--target NAME]
//	deployhook ssh     --config FILE --target NAME
//	deployhook tunnel  --config FILE --target NAME --listen 127.0.0.1:PORT
//	deployhook check   --config FILE
//	deployhook send-test-webhook --url URL [--event push] [--sha SHA]
//	deployhook version
//
// A deploy or rollback from the command line takes a commit on the target's
// branch or one the target deployed successfully before; --force deploys any
// other commit on purpose (executor.Trigger.AnyCommit). No webhook can set it.
//
// This package is the only one that imports every other: it reads the
// configuration (config), builds each part with its options, and wires them.
// Before the journal is opened, data_dir is checked (config.PrepareDataDir), and
// secret or key files that others can read are named in the log
// (config.Config.FileWarnings).
package main
