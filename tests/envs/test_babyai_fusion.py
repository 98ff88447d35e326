import numpy as np
import torch

from envs.babyai import make_babyai_env
from envs.babyai_fusion import babyai_fusion_inputs, babyai_modalities
from lab.fusion import FusionConfig, FusionTransformer
from lab.layers import TransformerConfig


def observations(n=4):
    env = make_babyai_env("BabyAI-GoToRedBallGrey-v0")
    obs = [env.reset(seed=i)[0] for i in range(n)]
    return {k: np.stack([o[k] for o in obs]) for k in obs[0]}


def test_raw_and_sb3_preprocessed_observations_give_the_same_fused_vector():
    obs = observations()
    model = FusionTransformer(FusionConfig(babyai_modalities(), TransformerConfig(32, 4, 1, dropout=0.0))).eval()
    raw = babyai_fusion_inputs(torch.as_tensor(obs["image"]), torch.as_tensor(obs["direction"]), torch.as_tensor(obs["mission"]))
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(obs["direction"]), 4).float()
    sb3 = babyai_fusion_inputs(torch.as_tensor(obs["image"]).float(), one_hot, torch.as_tensor(obs["mission"]).float())
    assert raw[0]["mission"].shape[1] == 5  # "go to the red ball": trimmed from 72 padded ids
    torch.testing.assert_close(model(*raw).fused, model(*sb3).fused)
    buffer = babyai_fusion_inputs(torch.as_tensor(obs["image"]).float(), one_hot[:, None], torch.as_tensor(obs["mission"]).float())
    torch.testing.assert_close(model(*buffer).fused, model(*sb3).fused)  # SB3's rollout buffer adds a dim
    # trimming the padding changes nothing: the untrimmed, masked mission gives the same vector
    full = dict(raw[0], mission=torch.as_tensor(obs["mission"]))
    torch.testing.assert_close(model(full, {"mission": full["mission"] == 0}).fused, model(*raw).fused, atol=1e-5, rtol=0)


def test_previous_actions_match_between_env_and_demos(tmp_path):
    from envs.babyai import NO_ACTION
    from envs.demos import collect_demos, load_demos

    collect_demos("BabyAI-GoToRedBallGrey-v0", 3, tmp_path, seed=5, progress=False)
    demos = load_demos(tmp_path)
    k = 3
    table = demos.prev_actions(k)
    env = make_babyai_env("BabyAI-GoToRedBallGrey-v0", action_history=k)
    assert env.observation_space["prev_actions"].shape == (k,)
    for i in range(demos.num_episodes):  # replaying the demo shows exactly the stored previous actions
        steps = demos.episode_slice(i)
        obs, _ = env.reset(seed=int(demos.seed[i]))
        for t, action in zip(range(steps.start, steps.stop), demos.action[steps]):
            np.testing.assert_array_equal(obs["prev_actions"], table[t])
            np.testing.assert_array_equal(obs["image"], demos.image[t])
            obs, *_ = env.step(int(action))
    assert (table[demos.episode_start] == NO_ACTION).all()
    modalities = babyai_modalities(action_history=k)
    model = FusionTransformer(FusionConfig(modalities, TransformerConfig(32, 4, 1, dropout=0.0)))
    inputs, masks = babyai_fusion_inputs(
        torch.as_tensor(demos.image), torch.as_tensor(demos.direction), torch.as_tensor(demos.step_mission()),
        torch.as_tensor(table),
    )
    assert model(inputs, masks).fused.shape == (demos.num_steps, 32)


def test_the_cheap_babyai_tokens_keep_every_input_and_the_order_of_the_previous_actions():
    """view_stem=(3, 2): 9 patch tokens for the 49 cells; history_as_one_token: one token of k fields, in which
    slot j keeps its own table (the same actions in another order are another history)."""
    obs = observations()
    k = 4
    history = torch.tensor([[0, 1, 2, 7]] * len(obs["image"]))
    modalities = babyai_modalities(action_history=k, view_stem=(3, 2), history_as_one_token=True)
    assert [m.num_tokens for m in modalities] == [9, 1, 72, 1] and modalities[3].num_fields == k
    torch.manual_seed(0)
    model = FusionTransformer(FusionConfig(modalities, TransformerConfig(32, 1, 1, dropout=0.0))).eval()
    args = [torch.as_tensor(obs[key]) for key in ("image", "direction", "mission")]
    inputs, masks = babyai_fusion_inputs(*args, history, history_as_one_token=True)
    assert inputs["prev_actions"].shape == (len(history), 1, k) and inputs["image"].shape == (len(history), 49, 3)
    with torch.no_grad():
        out = model(inputs, masks)
        assert out.tokens.shape == (len(history), 1 + 9 + 1 + 5 + 1, 32)
        reordered = model(*babyai_fusion_inputs(*args, history.flip(1), history_as_one_token=True)).fused
        assert not torch.allclose(reordered, out.fused)
        moved = torch.as_tensor(obs["image"]).clone()
        moved[:, 0, 0] = (moved[:, 0, 0] + 1) % 11  # one corner cell: still seen through its patch
        assert not torch.allclose(model(*babyai_fusion_inputs(moved, *args[1:], history, history_as_one_token=True)).fused,
                                  out.fused)
