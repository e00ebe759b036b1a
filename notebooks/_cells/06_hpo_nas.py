# %% [markdown]
# # AutoNN: hyper-parameter search (HPO) and architecture search (NAS)
#
# **HPO** searches the training hyper-parameters (learning rate, momentum, warm-up...) with a
# Bayesian sampler (TPE), stops hopeless trials early (median pruning on each epoch's
# validation), writes the best ones to the project and retrains the final model with them.
# **NAS** searches architectures around the base model (depth per stage and width) for two goals
# at once, accuracy and latency on the target's runtime, and returns the Pareto front to pick
# from; the chosen architecture becomes a registered model like any other.
#
# Studies live in an Optuna storage (SQLite in the project by default): stop the kernel and run
# again, and the study continues where it stopped. Point `storage` at a PostgreSQL URL and start
# `tango tune --join` on other machines to search in parallel.

# %% [install notebook,export,autonn]

# %% [parameters]
workdir = "tango-autonn"
target = "x86-cpu"
n_per_class = 20
imgsz = 16
hpo_trials = 4        # HPO budget in trials (or set hpo_minutes)
hpo_minutes = 0       # 0: no time limit
hpo_epochs = 2        # epochs per HPO trial
nas_trials = 4        # NAS budget in trials
nas_epochs = 1        # short training per candidate (accuracy estimate)
storage = ""          # empty: SQLite in the project; or postgresql://user@host/db

# %% [markdown]
# ## Project and data

# %%
from pathlib import Path

from tango_core import Project, recommend
from tango_core.data import make_sample

project = Project.create(Path(workdir) / "project", task="classification", target=target, exist_ok=True)
if not project.config.dataset:
    project.attach_dataset(make_sample("digits", project.path("data"), n_per_class=n_per_class, size=imgsz))
if not project.config.model:
    project.set(model=recommend("classification", len(project.config.classes), target=target).model)
print(project, "| base model:", project.config.model)

# %% [markdown]
# ## Hyper-parameter search
# The study view follows the trials live: each trial's fitness, the best so far, and the
# parameters of every trial (parallel coordinates).

# %%
from IPython.display import display

from tango_core.autonn import tune
from tango_widgets import StudyView

hpo_view = StudyView(project.events, directions=["maximize"], objectives=["fitness"], title="HPO")
display(hpo_view)
tuned = tune(project, trials=hpo_trials, timeout_min=hpo_minutes or None, epochs=hpo_epochs, imgsz=imgsz,
             batch_size=32, hyp={"fliplr": 0.0}, storage=storage or None, retrain_epochs=hpo_epochs)
hpo_view.refresh()

# %%
from tango_core.report import Table

print(f"default hyper-parameters: fitness {tuned.default_value}")
print(f"best trial {tuned.best_trial}: fitness {tuned.best_value}")
Table([{"trial": t["trial"], "state": t["state"], "fitness": (t.get("values") or [None])[0],
        **{k: round(v, 5) if isinstance(v, float) else v for k, v in t["params"].items()}} for t in tuned.trials],
      title=f"study {tuned.study}")

# %% [markdown]
# ## Architecture search for the target
# Each candidate is trained briefly (its accuracy estimate) and exported to the target's runtime
# and timed here when that runtime runs here; otherwise a latency model fitted on measurements
# predicts it.

# %%
from tango_core.autonn import search

nas_view = StudyView(project.events, directions=["maximize", "minimize"], objectives=["accuracy", "latency ms"],
                     title="NAS")
display(nas_view)
found = search(project, trials=nas_trials, epochs=nas_epochs, imgsz=imgsz, batch_size=32, hyp={"fliplr": 0.0},
               storage=storage or None)
nas_view.refresh()
print(found.table())

# %% [markdown]
# ## Pick an architecture from the Pareto front
# Here: the most accurate point of the front. The choice is registered as a model and saved in
# the project, so it trains, exports and deploys like any base model.

# %%
best = max(found.front, key=lambda c: c.accuracy)
name = found.choose(best, project=project)
print("chosen:", name, "|", best.describe, f"| accuracy {best.accuracy:.3f}, latency {best.latency_ms:.3f} ms")
print("project model:", project.config.model)
