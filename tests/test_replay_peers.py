"""The fair peers: each with the lifecycle of the real system and its documented defaults."""

from __future__ import annotations

from autopyfactory.info import BatchQueueInfo, WMSQueueInfo
from autopyfactory.interfaces import SchedInfo
from autopyfactory.replay.model import IDEAL, Model, replay
from autopyfactory.replay.policies import make_policy
from autopyfactory.replay.traces import Job


def info(ready, pending, running, busy=0):
    return SchedInfo(WMSQueueInfo(ready=ready, running=busy), BatchQueueInfo(pending=pending, running=running))


def run(jobs, policy, **options):
    model = Model(**{**IDEAL, **options})
    return replay(jobs, model, make_policy(policy, model), timeline=True)


# ---------------------------------------------------------------- COBalD / TARDIS


def test_cobald_demand_is_in_cores_and_booting_drones_supply_nothing():
    cobald = make_policy("cobald", Model(slots=400, pilot_cores=8))
    # no drone up: FactoryPool reports utilisation 1.0, so demand rises 1 core/s x 120 s: 121 cores = 16 drones
    assert cobald.decide(info(0, 0, 0)) == 16
    # 16 drones booting supply 0 cores: demand rises again (241 cores), 31 drones asked for, 15 more
    assert cobald.decide(info(0, 16, 0)) == 15
    assert cobald.demand == 241


def test_cobald_releases_booting_drones_first_then_drains_the_least_used():
    cobald = make_policy("cobald", Model(slots=400, pilot_cores=4))
    cobald.demand = 130  # after this cycle's drop (utilisation 2/40 < 0.9): 10 cores
    # 10 drones up (40 cores, 2 busy) > demand 10: release 4 booting (16 cores), then drain drones down to 10 cores
    assert cobald.decide(info(0, 4, 10, busy=2)) == -4
    assert cobald.demand == 10 and cobald.drain == 7  # 40 cores of children - 10 = 30: 7 whole drones
    # while supply <= demand nothing is released even with drones booting (TARDIS grows or holds)
    cobald.demand = 1000
    assert cobald.decide(info(50, 100, 10, busy=40)) == 0 and cobald.drain == 0


def test_a_drone_lives_until_drained():
    # one burst; drones stay up after it (utilisation falls and demand with it, 120 cores a cycle) and are
    # drained once supply exceeds demand, not after two empty getJob tries
    jobs = [Job(0, 600)] * 20
    result = run(jobs, "cobald", slots=40, queue_delay="fixed:0")
    assert result.jobs_done == 20
    drone_life = result.pilot_time / result.pilots
    assert drone_life > 600 + 120  # a PanDA pilot would have gone 60 s after its job
    peak_running = max(row[4] for row in result.timeline)
    assert peak_running <= 40


def test_drones_pack_jobs_as_partitionable_slots():
    jobs = [Job(0, 600)] * 8
    result = run(jobs, "cobald", slots=16, pilot_cores=8, queue_delay="fixed:0")
    assert result.jobs_done == 8
    assert result.busy_time == 8 * 600


# ---------------------------------------------------------------- GlideinWMS


def test_a_glidein_waits_20_minutes_for_its_first_job_and_400_s_for_the_next():
    glidein = make_policy("glideinwms", Model())
    assert (glidein.pilot.first_tries - 1) * glidein.pilot.retry == 1200  # GLIDEIN_Max_Idle
    assert (glidein.pilot.tries - 1) * glidein.pilot.retry == 420  # GLIDEIN_Max_Tail 400 s, by negotiation cycles
    assert glidein.pilot.partitionable
    # a job at 0 and one at 400 s: the glidein that ran the first (0-100 s) still waits and takes the second;
    # a PanDA pilot left at 160 s and a second one is needed
    jobs = [Job(0, 100), Job(400, 100)]
    glideins = run(jobs, "glideinwms", slots=1, queue_delay="fixed:0")
    assert (glideins.jobs_done, glideins.pilots, glideins.waits) == (2, 1, [0, 0])
    pilots = run(jobs, "apf-default", slots=1, queue_delay="fixed:0")
    assert pilots.pilots == 2 and pilots.waits[1] > 0
    # with no work after it, the glidein waits 420 s after its last job: ends at 500 + 420
    assert glideins.pilot_time == 920


def test_glideinwms_counts_idle_jobs_in_glideins_of_its_cores():
    glidein = make_policy("glideinwms", Model(pilot_cores=8))
    assert glidein.decide(info(240, 0, 0)) == 10  # 240 one-core jobs = 30 eight-core glideins, / ramp-up 3


def test_harvester_workers_are_panda_pilots():
    harvester = make_policy("harvester", Model())
    assert getattr(harvester, "pilot", None) is None  # the site's PanDA pilots: --pilot-tries, --timefloor
    result = run([Job(0, 100)] * 5, "harvester", slots=10, queue_delay="fixed:0", timefloor=0)
    assert result.pilots == 5 and result.empty == 0
