"""Third-party steps that misbehave, installed for the edge-case table through their entry points
(``edge_plugins-0.1.dist-info``; put this folder on ``sys.path``). Each fails in one way a
researcher's step can: it raises, returns the wrong thing, or cannot even be built."""

from __future__ import annotations

from filters import Filter
from generators import GENERATORS, Generator
from simulators.domains.store import StoreEnv


class BoomCheck(Filter):
    """Raises on every trajectory it is asked about."""

    def check(self, trajectory, ctx):
        raise ValueError("edge boom: cannot judge this dialogue\n(second line of the message)")


class SometimesBoom(Filter):
    """Raises on about half of the trajectories (by task id), passes the rest."""

    def check(self, trajectory, ctx):
        if int(trajectory.task_id[-1], 16) % 2:
            raise KeyError("edge-missing-field")
        return self.passed()


class NoneVerdict(Filter):
    """Returns nothing instead of a Verdict."""

    def check(self, trajectory, ctx):
        return None


class BoomFilterInit(Filter):
    def __init__(self, params=None):
        raise RuntimeError("edge boom: filter cannot start (no licence file)")


class BoomGenerate(Generator):
    def generate(self, rng):
        raise RuntimeError("edge boom: generator exploded")


class SometimesGenerate(Generator):
    """Delegates to the built-in blueprint generator, and raises on about a third of the draws."""

    def generate(self, rng):
        if rng.random() < 0.34:
            raise ZeroDivisionError("edge boom: division by zero in the plug-in")
        blueprint = GENERATORS.get("blueprint")
        return blueprint(self.env, blueprint.Params()).generate(rng)


class NoneTask(Generator):
    def generate(self, rng):
        return None


class BoomGeneratorInit(Generator):
    def __init__(self, env, params):
        raise RuntimeError("edge boom: generator cannot start")


class BoomDomain(StoreEnv):
    @classmethod
    def configure(cls, params):
        raise OSError("edge boom: domain data unavailable")
