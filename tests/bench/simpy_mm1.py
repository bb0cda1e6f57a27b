#!/usr/bin/python3
"""SimPy 2.3 peer of `kvsim bench evq` (Debian's python3-simpy; run with
/usr/bin/python3).  The same model as the C side: N processes, each holding
for an exponentially distributed time (mean 1) and then holding again, until
E holds have completed in total.  Prints "simpy N events seconds".
The C program embeds a copy of this text (sim/cli/cmd_hw.c); keep both equal.
usage: simpy_mm1.py N E"""
import random, sys, time
from SimPy.Simulation import Process, hold, activate, simulate, initialize, stopSimulation

N = int(sys.argv[1]); E = int(sys.argv[2])
count = 0

class Holder(Process):
    def run(self):
        global count
        while True:
            yield hold, self, random.expovariate(1.0)
            count += 1
            if count >= E:
                stopSimulation()

random.seed(1)
initialize()
for i in range(N):
    p = Holder()
    activate(p, p.run())
t0 = time.perf_counter()
simulate(until=1e30)
dt = time.perf_counter() - t0
print("simpy %d %d %.6f" % (N, count, dt))
