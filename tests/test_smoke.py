def test_fixture_registry_registers(registry, model_dir):
    model_id = registry.register_model(model_dir("als/v1"), "als", {"factors": 8}, {"ndcg@10": 0.2}, {})
    assert registry.select_best_model()["model_id"] == model_id
