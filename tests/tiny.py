"""Tiny settings for every head, shared by the training tests and the golden-checkpoint maker."""

TINY_HEADS = {
    "deterministic": {"hidden_dims": "32"},
    "gaussian": {"hidden_dims": "32"},
    "gmm": {"hidden_dims": "32", "num_modes": "3"},
    "autoregressive": {"bins": "16", "d_model": "32", "num_layers": "1", "num_heads": "2"},
    "diffusion": {"denoiser": "unet", "down_dims": "8,16", "n_groups": "4", "time_embed_dim": "16",
                  "num_train_timesteps": "20", "num_inference_steps": "4"},
    "flow": {"denoiser": "mlp", "mlp_hidden_dims": "32,32", "time_embed_dim": "16",
             "shortcut_max_steps": "8", "num_inference_steps": "2"},
}
TINY_ENCODER = {"hidden_dims": "32", "feature_dim": "16"}


def tiny_config(data, out, head, **overrides):
    from imitate.train import TrainConfig

    settings = dict(data=str(data), out=str(out), head=head, steps=6, batch_size=16, obs_horizon=2, action_horizon=4,
                    n_act=2, warmup_steps=2, log_every=2, val_every=3, val_batches=1, eval_episodes=0, ckpt_every=3)
    settings.update(overrides)
    return TrainConfig(**settings)
