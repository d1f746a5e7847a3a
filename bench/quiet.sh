#!/usr/bin/env bash
# Run a benchmark with this project's background jobs (training, cross-validation) paused,
# so that they do not share the 2 cores with it:  bash bench/quiet.sh python bench/predict.py
pids=$(pgrep -f "mimika(\.cli)? (train|crossval)" || true)
[ -n "$pids" ] && kill -STOP $pids
trap '[ -n "$pids" ] && kill -CONT $pids' EXIT
"$@"
