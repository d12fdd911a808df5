"""Every Prefect task of facegan, in one place: each is a thin wrapper (name, caching, retries)
over a plain function of tasks/ that can be called and tested without Prefect. Flows import
their steps from here. It stays at tasks/steps.py, outside the stage rooms (acquisition/, cropping/,
training/, evaluating/, pipeline/; common/ holds the shared helpers): the one stage-agnostic entry point.

Caching: steps are not cached (NO_CACHE: their inputs are files that change under them), except
crop-shard, cached exactly while its output file is present and unchanged, so a killed crop
resumes where it stopped.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from facegan.tasks.acquisition import local
from facegan.tasks.acquisition import stage as acquire_stage
from facegan.tasks.cropping import publish as crop_publish
from facegan.tasks.cropping import stage as crop_stage
from facegan.tasks.evaluating import report, scoring
from facegan.tasks.training import generated_faces, lifecycle


def _step(fn, name: str, **options):
    return task(fn, name=name, **{"cache_policy": NO_CACHE, **options})


# acquire
import_folder = _step(local.import_folder, "import-folder")
open_raw_set = _step(acquire_stage.open_raw_set, "open-raw-set")
import_archive = _step(acquire_stage.import_archive, "import-archive")
fetch_source = _step(acquire_stage.fetch_source, "fetch-url")
read_url_list = _step(acquire_stage.read_url_list, "read-url-list")
crawl = _step(acquire_stage.crawl, "crawl")
plan_downloads = _step(acquire_stage.plan_downloads, "plan-downloads")
download_shard = _step(acquire_stage.download_shard, "download-shard")
finish_downloads = _step(acquire_stage.finish_downloads, "finish-downloads")
finish_acquire = _step(acquire_stage.finish_acquire, "write-manifest")
publish_acquire = _step(acquire_stage.publish, "publish-acquire")

# crop
plan_crop = _step(crop_stage.plan_crop, "plan-crop")
crop_shard = task(
    crop_stage.crop_shard,
    name="crop-shard",
    cache_key_fn=crop_stage.shard_cache_key,
    persist_result=True,
    retries=1,
    log_prints=False,
)
build_datasets = _step(crop_stage.build_datasets, "assemble-datasets")
publish_crop = _step(crop_publish.publish, "publish-crop")

# train
open_training_run = _step(lifecycle.prepare_run, "open-training-run")
train_gan = _step(lifecycle.train, "train-gan")
publish_generator = _step(lifecycle.publish, "publish-generator")

# generate
write_faces = _step(generated_faces.write_faces, "generate-faces")

# evaluate
sample_faces = _step(scoring.sample_faces, "generate-samples")
load_real_sets = _step(scoring.load_real_sets, "load-real-sets")
score_images = _step(scoring.score_images, "score-images")
table_1 = _step(report.table_1, "table-1")
publish_report = _step(report.publish, "publish-report")
