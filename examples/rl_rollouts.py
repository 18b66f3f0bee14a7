"""Reinforcement learning with rollout-worker actors and a learner, as in Ray's
"Learning to Play Pong" and parameter-server examples.

Each RolloutWorker actor steps its own CartPole (gymnasium's CartPole-v1 where gymnasium
is installed, else the numpy copy below: same constants, observations and termination)
with a linear softmax policy. Every iteration the learner puts the weights in the object
store once, hands the ref to every worker, takes their batches as they arrive with
ray.wait and makes one REINFORCE step (Adam) from them.

Sizes: RAYCOMPAT_RL_WORKERS, RAYCOMPAT_RL_EPISODES (per worker per iteration),
RAYCOMPAT_RL_ITERATIONS, RAYCOMPAT_RL_SEED.
"""

import math
import os

import numpy as np

import raycompat as ray

NUM_WORKERS = int(os.environ.get("RAYCOMPAT_RL_WORKERS", 4))
EPISODES_PER_WORKER = int(os.environ.get("RAYCOMPAT_RL_EPISODES", 8))
ITERATIONS = int(os.environ.get("RAYCOMPAT_RL_ITERATIONS", 40))
SEED = int(os.environ.get("RAYCOMPAT_RL_SEED", 0))
GAMMA = 0.99
LEARNING_RATE = 0.2
OBS_DIM, NUM_ACTIONS = 4, 2


class NumpyCartPole:
    """gymnasium's CartPole-v1 in numpy: same physics (Euler), observation, reward 1 per
    step, termination (|x| > 2.4 or |theta| > 12 degrees) and truncation at 500 steps."""

    gravity, masscart, masspole, length = 9.8, 1.0, 0.1, 0.5
    total_mass = masspole + masscart
    polemass_length = masspole * length
    force_mag, tau = 10.0, 0.02
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4
    max_episode_steps = 500

    def __init__(self):
        self.np_random = np.random.default_rng()
        self.state = None
        self.steps = 0

    def reset(self, seed=None):
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        self.state = self.np_random.uniform(low=-0.05, high=0.05, size=(4,))
        self.steps = 0
        return np.array(self.state, dtype=np.float32), {}

    def step(self, action):
        x, x_dot, theta, theta_dot = self.state
        force = self.force_mag if action == 1 else -self.force_mag
        costheta, sintheta = math.cos(theta), math.sin(theta)
        temp = (force + self.polemass_length * theta_dot**2 * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta**2 / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * xacc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * thetaacc
        self.state = np.array((x, x_dot, theta, theta_dot), dtype=np.float64)
        self.steps += 1
        terminated = bool(
            x < -self.x_threshold
            or x > self.x_threshold
            or theta < -self.theta_threshold_radians
            or theta > self.theta_threshold_radians
        )
        truncated = self.steps >= self.max_episode_steps
        return np.array(self.state, dtype=np.float32), 1.0, terminated, truncated, {}


def make_env():
    try:
        import gymnasium

        return gymnasium.make("CartPole-v1"), "gymnasium CartPole-v1"
    except ImportError:
        return NumpyCartPole(), "numpy CartPole"


def action_probs(weights, obs):
    logits = obs @ weights["W"] + weights["b"]
    logits = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


@ray.remote
class RolloutWorker:
    def __init__(self, seed):
        self.env, self.env_label = make_env()
        self.rng = np.random.default_rng(seed)
        self.env.reset(seed=seed)  # seeds the environment's own generator once

    def env_name(self):
        return self.env_label

    def rollout(self, weights, num_episodes):
        """Run episodes with the policy; return the batch: observations, actions,
        discounted returns-to-go and each episode's total reward."""
        observations, actions, returns, episode_returns = [], [], [], []
        for _ in range(num_episodes):
            obs, _ = self.env.reset()
            rewards = []
            done = False
            while not done:
                p = action_probs(weights, obs)
                action = int(self.rng.random() < p[1])
                observations.append(obs)
                actions.append(action)
                obs, reward, terminated, truncated, _ = self.env.step(action)
                rewards.append(reward)
                done = terminated or truncated
            g, to_go = 0.0, []
            for r in reversed(rewards):
                g = r + GAMMA * g
                to_go.append(g)
            returns.extend(reversed(to_go))
            episode_returns.append(sum(rewards))
        return {
            "obs": np.array(observations, dtype=np.float64),
            "actions": np.array(actions),
            "returns": np.array(returns),
            "episode_returns": episode_returns,
        }


def policy_gradient(weights, batch):
    """REINFORCE with a normalized-return baseline: the gradient of the mean of
    log pi(a|s) * advantage over the batch's steps."""
    adv = batch["returns"] - batch["returns"].mean()
    adv = adv / (batch["returns"].std() + 1e-8)
    p = action_probs(weights, batch["obs"])
    dlogits = np.eye(NUM_ACTIONS)[batch["actions"]] - p  # d log pi(a|s) / d logits
    dlogits *= adv[:, None] / len(adv)
    return {"W": batch["obs"].T @ dlogits, "b": dlogits.sum(axis=0)}


class Adam:
    def __init__(self, weights, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = {k: np.zeros_like(v) for k, v in weights.items()}
        self.v = {k: np.zeros_like(v) for k, v in weights.items()}
        self.t = 0

    def ascend(self, weights, grad):
        self.t += 1
        for k in weights:
            self.m[k] = self.beta1 * self.m[k] + (1 - self.beta1) * grad[k]
            self.v[k] = self.beta2 * self.v[k] + (1 - self.beta2) * grad[k] ** 2
            m_hat = self.m[k] / (1 - self.beta1**self.t)
            v_hat = self.v[k] / (1 - self.beta2**self.t)
            weights[k] = weights[k] + self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


ray.init()

# All-zero weights: the first iteration is the uniformly random policy.
weights = {"W": np.zeros((OBS_DIM, NUM_ACTIONS)), "b": np.zeros(NUM_ACTIONS)}
optimizer = Adam(weights, LEARNING_RATE)
workers = [RolloutWorker.remote(SEED * 1000 + i) for i in range(NUM_WORKERS)]
print(f"{NUM_WORKERS} rollout workers on {ray.get(workers[0].env_name.remote())}, "
      f"{EPISODES_PER_WORKER} episodes each per iteration")

returns_per_iteration = []
for iteration in range(1, ITERATIONS + 1):
    weights_ref = ray.put(weights)  # once per iteration, shared by every worker
    pending = {w.rollout.remote(weights_ref, EPISODES_PER_WORKER): i for i, w in enumerate(workers)}
    grads, episode_returns = [None] * NUM_WORKERS, [None] * NUM_WORKERS
    while pending:
        [ready], _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(ready)
        batch = ray.get(ready)
        grads[i] = policy_gradient(weights, batch)  # as each batch arrives
        episode_returns[i] = batch["episode_returns"]
    # Average in worker order, so that a run is the same whatever order batches came in.
    grad = {k: sum(g[k] for g in grads) / NUM_WORKERS for k in weights}
    optimizer.ascend(weights, grad)
    mean_return = float(np.mean([r for rs in episode_returns for r in rs]))
    returns_per_iteration.append(mean_return)
    print(f"iteration {iteration}: mean episode return {mean_return:.1f}")

print(f"initial mean return: {returns_per_iteration[0]:.1f}")
print(f"final mean return: {returns_per_iteration[-1]:.1f}")
