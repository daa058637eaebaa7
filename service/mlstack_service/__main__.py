"""`python -m mlstack_service`: serve the model named by MLSTACK_MODEL_URI on MLSTACK_PORT."""

from mlstack_service.server import main

if __name__ == "__main__":
    main()
