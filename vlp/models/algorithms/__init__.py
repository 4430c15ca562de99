# parts register themselves in vlp.registry.MODELS on import
