#!/usr/bin/env bash
# bench/bench_hpc.sh BUILD - what "kfm run" adds to an unmodified program:
# per OpenMP region (kernels/hpc/omp_regions.c on LLVM libomp, teams of 1
# and 2) and per MPI call (kernels/hpc/mpi_calls.c, one rank), measured side
# by side in this run against the same program without kfm run.
#
# OpenMP: the wall time of N regions minus that of 0 regions, with and
# without kfm run, in 9 paired repetitions; the median difference per region.
# MPI: the program times its own calls (best of 5 rounds of N); run plain and
# under kfm run, alternated, best of 3 each.  Output: one JSON line per
# figure, as bench/run's others ("value":null with "unavailable" when a
# program was not built).
set -uo pipefail
build=${1:?usage: bench_hpc.sh BUILD_DIR}
kfm="$build/bindings/cli/kfm"
omp="$build/kernels/hpc/hpc_omp_regions"
mpi="$build/kernels/hpc/hpc_mpi_calls"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

emit() { # name value unit [extra json]
  printf '{"name":"%s","value":%s,"unit":"%s"%s}\n' "$1" "$2" "$3" "${4:-}"
}
unavailable() { # name unit why
  printf '{"name":"%s","value":null,"unit":"%s","unavailable":"%s"}\n' "$1" "$2" "$3"
}
now() { date +%s%N; }

# Wall ns of one run of the OpenMP program with N regions, plain or under
# kfm run.
omp_ns() { # plain|kfm N
  local t0 t1
  t0=$(now)
  if [[ $1 == plain ]]; then
    "$omp" "$2" 0 0 >/dev/null 2>&1
  else
    "$kfm" run -o "$scratch/omp.json" -- "$omp" "$2" 0 0 >/dev/null 2>&1
  fi
  t1=$(now)
  echo $((t1 - t0))
}

# Median and quartiles of the numbers on stdin: "median q25 q75".
quartiles() {
  sort -g | awk '{v[NR] = $1} END {
    printf "%.1f %.1f %.1f", v[int((NR + 1) / 2)], v[int((NR + 3) / 4)], v[int((3 * NR + 1) / 4)]}'
}

if [[ -x "$kfm" && -x "$omp" ]]; then
  # Paired: each repetition runs the four programs back to back (order
  # rotated), and a region's cost is that repetition's (N - 0 regions) / N;
  # what kfm run adds is the difference of the two, per repetition.  The
  # median of 9 repetitions, with quartiles.
  N=200000
  for team in 1 2; do
    export OMP_NUM_THREADS=$team OMP_WAIT_POLICY=active
    plain_l=() added_l=() fixed_l=()
    for rep in 1 2 3 4 5 6 7 8 9; do
      declare -A w=()
      order=(plain:0 plain:$N kfm:0 kfm:$N)
      for ((k = 0; k < 4; k++)); do
        c=${order[$(((k + rep) % 4))]}
        w[$c]=$(omp_ns "${c%%:*}" "${c##*:}")
      done
      p=$((w[plain:$N] - w[plain:0])) q=$((w[kfm:$N] - w[kfm:0]))
      plain_l+=("$(awk -v a="$p" -v n="$N" 'BEGIN{printf "%.2f", a / n}')")
      added_l+=("$(awk -v a="$q" -v b="$p" -v n="$N" 'BEGIN{printf "%.2f", (a - b) / n}')")
      fixed_l+=("$(awk -v a="${w[kfm:0]}" -v b="${w[plain:0]}" 'BEGIN{printf "%.0f", (a - b) / 1000}')")
      unset w
    done
    read -r pm pq1 pq3 < <(printf '%s\n' "${plain_l[@]}" | quartiles)
    read -r am aq1 aq3 < <(printf '%s\n' "${added_l[@]}" | quartiles)
    read -r fm _ _ < <(printf '%s\n' "${fixed_l[@]}" | quartiles)
    emit "hpc.omp_region_ns.team$team.plain" "$pm" "ns" ",\"q25\":$pq1,\"q75\":$pq3"
    if awk -v a="$am" 'BEGIN{exit !(a > 0)}'; then
      emit "hpc.omp_region_ns.team$team.kfm_run_added" "$am" "ns" \
        ",\"q25\":$aq1,\"q75\":$aq3,\"peer\":$pm,\"ratio\":$(awk -v a="$am" -v b="$pm" \
        'BEGIN{printf "%.3f", (b > 0 ? a / b : 0)}')"
    else
      # The difference is below this machine's run-to-run noise: no figure.
      printf '{"name":"%s","value":null,"unit":"ns","unavailable":"%s","q25":%s,"q75":%s}\n' \
        "hpc.omp_region_ns.team$team.kfm_run_added" \
        "below the noise: median of 9 paired differences $am ns" "$aq1" "$aq3"
    fi
    emit "hpc.kfm_run_fixed_us.team$team" "$fm" "us"
  done
  unset OMP_NUM_THREADS OMP_WAIT_POLICY
else
  unavailable "hpc.omp_region_ns" "ns" "kfm or hpc_omp_regions not built (LLVM libomp needed)"
fi

mpirun=$(command -v mpirun || true)
if [[ -x "$kfm" && -x "$mpi" && -n "$mpirun" ]]; then
  root=()
  [[ $(id -u) == 0 ]] && root=(--allow-run-as-root)
  # "MPI_Barrier 3.3 ns/call, MPI_Allreduce 12.9 ns/call" -> "3.3 12.9"
  calls() { "$@" 2>/dev/null | sed -n 's/MPI_Barrier \([0-9.]*\) ns\/call, MPI_Allreduce \([0-9.]*\) ns\/call/\1 \2/p'; }
  bb=1e30 ba=1e30 kb=1e30 ka=1e30
  for _ in 1 2 3; do
    read -r b a < <(calls "$mpirun" -np 1 "${root[@]}" "$mpi" 200000)
    read -r c d < <(calls "$mpirun" -np 1 "${root[@]}" "$kfm" run -m off -o "$scratch/m.json" -- \
      "$mpi" 200000)
    bb=$(awk -v x="$bb" -v y="${b:-1e30}" 'BEGIN{print ((y + 0 < x + 0) ? y : x)}')
    ba=$(awk -v x="$ba" -v y="${a:-1e30}" 'BEGIN{print ((y + 0 < x + 0) ? y : x)}')
    kb=$(awk -v x="$kb" -v y="${c:-1e30}" 'BEGIN{print ((y + 0 < x + 0) ? y : x)}')
    ka=$(awk -v x="$ka" -v y="${d:-1e30}" 'BEGIN{print ((y + 0 < x + 0) ? y : x)}')
  done
  if [[ $bb == 1e30 || $kb == 1e30 ]]; then
    unavailable "hpc.mpi_call_ns" "ns" "mpi_calls printed no timing (mpirun failed)"
  else
    for pair in "barrier $bb $kb" "allreduce $ba $ka"; do
      read -r what plain prof <<<"$pair"
      emit "hpc.mpi_call_ns.$what.plain" "$plain" "ns"
      added=$(awk -v a="$prof" -v b="$plain" 'BEGIN{printf "%.1f", a - b}')
      if awk -v a="$added" 'BEGIN{exit !(a > 0)}'; then
        emit "hpc.mpi_call_ns.$what.kfm_run_added" "$added" "ns" ",\"peer\":$plain"
      else
        # Nothing measurable: the PMPI library was not preloaded (not built)
        # or the difference is below the noise.  No figure either way.
        unavailable "hpc.mpi_call_ns.$what.kfm_run_added" "ns" \
          "no measurable difference ($added ns): is libkfm_mpi.so built next to libkfm_preload.so?"
      fi
    done
  fi
else
  unavailable "hpc.mpi_call_ns" "ns" "kfm, hpc_mpi_calls or mpirun missing (libopenmpi-dev, openmpi-bin)"
fi
