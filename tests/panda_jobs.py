"""Print PanDA jobs as the submit API takes them (JSON), built with the server's own JobSpec.

Run by tests/pandainstance.py with the PanDA server's python:
``panda_jobs.py SITE COUNT COMMAND LABEL WITH_LOG NAME``. Each job runs COMMAND
through the generic payload wrapper ``run.sh`` (what a generic PanDA pilot
runs), has prodSourceLabel LABEL (``managed``: production, for a pilot with a
production DN) and, with WITH_LOG 1, a log file the pilot stages out.
"""

import json
import sys

from pandaserver.taskbuffer.FileSpec import FileSpec
from pandaserver.taskbuffer.JobSpec import JobSpec
from pandaserver.taskbuffer.JobUtils import dump_jobs_json

# the generic transformation URL form the pilot accepts; the pilot takes run.sh from
# $HARVESTER_WORKDIR when it is there, and never downloads it then
TRANSFORMATION = "https://storage.googleapis.com/drp-us-central1-containers/run.sh"


def main(site, count, command, label, with_log, name):
    dataset = f"panda.destDB.{name}"
    jobs = []
    for i in range(int(count)):
        job = JobSpec()
        job.jobDefinitionID = 1
        job.jobName = f"{name}_{i}"
        job.transformation = TRANSFORMATION
        job.destinationDBlock = dataset
        job.currentPriority = 100
        job.prodSourceLabel = label
        job.computingSite = site
        job.VO = "wlcg"
        job.cloud = "WORLD"
        job.jobParameters = command
        if with_log == "1":
            log = FileSpec()
            log.lfn = f"{job.jobName}.job.log.tgz"
            log.destinationDBlock = dataset
            log.dataset = dataset
            log.type = "log"
            job.addFile(log)
        jobs.append(job)
    print(json.dumps(dump_jobs_json(jobs)))


if __name__ == "__main__":
    main(*sys.argv[1:])
