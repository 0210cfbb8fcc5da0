"""The methods' loss schedules, and the warning for a run that ends before its image loss starts."""

from __future__ import annotations

from hand4dgs_ns.method_configs import (
    hand4dgs_generalized_trainer,
    hand4dgs_trainer,
    method_schedule,
    schedule_flags,
    schedule_warning,
)


def test_the_methods_lay_their_schedules_out_by_method_schedule():
    for method, build in (("hand4dgs", hand4dgs_trainer), ("hand4dgs-generalized", hand4dgs_generalized_trainer)):
        for steps in (900, 30000):
            config = build(steps)
            model = config.pipeline.model
            assert (model.image_loss_from, model.vertex_decay_steps) == method_schedule(method, steps)
            assert all(group["scheduler"].max_steps == steps for group in config.optimizers.values())
            assert schedule_warning(config) is None
    assert method_schedule("hand4dgs", 30000) == (20000, 10000)
    assert method_schedule("hand4dgs-generalized", 30000) == (18780, 2805)


def test_a_run_shorter_than_its_schedule_is_told_the_flags_for_its_length():
    config = hand4dgs_trainer()
    config.max_num_iterations = 5000
    warning = schedule_warning(config)
    assert "ends at step 4999 but its image loss starts at step 20000" in warning
    assert " ".join(schedule_flags("hand4dgs", 5000)) in warning
    assert schedule_flags("hand4dgs", 5000)[:4] == ["--pipeline.model.image-loss-from", "3333", "--pipeline.model.vertex-decay-steps", "1666"]
    # The flags it names give a run of that length its image phase.
    config.pipeline.model.image_loss_from, config.pipeline.model.vertex_decay_steps = method_schedule("hand4dgs", 5000)
    assert schedule_warning(config) is None

    generalized = hand4dgs_generalized_trainer()
    generalized.max_num_iterations = 12000
    assert "--pipeline.model.image-loss-from 7512 --pipeline.model.vertex-decay-steps 1122" in schedule_warning(generalized)


def test_a_resumed_run_is_warned_without_new_flags():
    config = hand4dgs_trainer()
    config.max_num_iterations = 5000  # resumed at step 10000: ends at 14999, before step 20000
    warning = schedule_warning(config, start_step=10000)
    assert "ends at step 14999" in warning and "--pipeline.model.image-loss-from 3333" not in warning
    assert schedule_warning(config, start_step=15001) is None
