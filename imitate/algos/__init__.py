"""Algorithms beyond behaviour cloning, each one file over the same Policy, heads and demo files:
DAgger and human-gated DAgger (`dagger`), PPO (`ppo`, the RL inner loop) and its run loop (`runs`,
also `imitate rl`), GAIL (`gail`), AIRL (`airl`), their shared discriminator pieces and reward
artifact (`rewards`), maximum-entropy IRL (`maxent_irl`). Import the module you need; nothing is
imported here, so that importing one algorithm never pulls in another's dependencies."""
