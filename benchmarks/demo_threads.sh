#!/bin/bash
# Run from anywhere; needs a cached warm-start (run `clipo train` once) at $CLIPO_CACHE (default below). LOADS="idle" for one half.
CLIPO_CACHE=${CLIPO_CACHE:-$HOME/.cache/clipo}; export CLIPO_CACHE
# Demo wall time (cached warm-start) with trainer.num_threads=0 (auto) vs -1 (torch default), idle and with a busy process beside it.
for load in ${LOADS:-idle loaded}; do
  for t in 0 -1; do
    d=/tmp/dt_${load}_${t}; rm -rf $d; mkdir -p $d; cd $d
    if [ $load = loaded ]; then python3 -c "while True: pass" & BUSY=$!; sleep 1; fi
    s=$(date +%s.%N)
    timeout 1500 ${CLIPO:-clipo} train trainer.num_threads=$t > log 2> err
    e=$(date +%s.%N)
    if [ $load = loaded ]; then kill $BUSY; wait $BUSY 2>/dev/null; fi
    echo "$load num_threads=$t: process $(python3 -c "print(round($e-$s,1))") s; $(grep 'wall time' log | cut -c1-16); $(grep -o 'clipo: [0-9] torch thread(s)[^;]*' err | head -1)"
    sleep 5
  done
done
