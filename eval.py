"""Evaluate a saved (pruned) model and export it: `python eval.py run=runs/<experiment>/<run-id> split=test
export=[onnx,torchscript]` (the same as the `regprune-eval` command)."""

from regprune.evaluate import main

if __name__ == "__main__":
    main()
