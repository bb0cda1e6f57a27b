#!/usr/bin/env bash
# sbatch_sweep.sh — run a kvsim sweep over several nodes of a Slurm cluster
# with MPI (a kvsim built with -DKVSIM_MPI=ON; `kvsim sweep --help` ends with
# "MPI: yes").  Each MPI rank runs its share of the sweep's runs into its own
# shard DB.rankNNN; rank 0 merges them into DB at the end.  Resubmitting the
# same job resumes: complete runs (in DB or in shards of a killed job) are
# not run again.
#
#   sbatch scripts/sbatch_sweep.sh reports/sweeps/headline.cfg /shared/fs/headline.db
#   sbatch --nodes=4 --ntasks-per-node=32 scripts/sbatch_sweep.sh SWEEP.cfg DB
#
# DB (and so the shards) must be on a filesystem every node sees, and the
# traces named by the sweep file must be readable from every node (set
# KVSIM_TRACE_DIR when they live elsewhere than the file says).  One rank a
# core with one worker each (-j 1) is the usual layout; with fewer ranks
# than cores give -j the cores per rank (KVSIM_JOBS below).
#
#SBATCH --job-name=kvsim-sweep
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=16
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --output=kvsim-sweep-%j.out
set -euo pipefail

SWEEP=${1:?usage: sbatch scripts/sbatch_sweep.sh SWEEP.cfg DB}
DB=${2:?usage: sbatch scripts/sbatch_sweep.sh SWEEP.cfg DB}
KVSIM=${KVSIM:-kvsim}                        # path of an MPI build of kvsim
JOBS=${KVSIM_JOBS:-${SLURM_CPUS_PER_TASK:-1}}

export OPENBLAS_NUM_THREADS=1                # one core per worker
"$KVSIM" sweep --help | grep -q '^MPI: yes' || {
    echo "$KVSIM was built without MPI: configure with -DKVSIM_MPI=ON" >&2
    exit 2
}
# Validate the file once before taking the allocation's time (no run starts).
"$KVSIM" sweep "$SWEEP" --db "$DB" --dry-run | tail -n 1

# srun starts one kvsim per task (Slurm's PMI; with MPICH built for Hydra
# use `mpiexec -n "$SLURM_NTASKS"` instead).
srun --mpi=pmi2 "$KVSIM" sweep "$SWEEP" --db "$DB" -j "$JOBS"
