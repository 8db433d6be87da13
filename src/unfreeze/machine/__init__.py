"""The machine a command runs on: its cores, devices, fast precisions, and a wall-clock deadline.

- ``cores``: the cores this process may use and torch's thread count set to fit;
- ``devices``: ``--device`` checked against the devices that exist here;
- ``hardware``: what the hardware runs fast, and the precision a piece of work runs in;
- ``deadline``: a deadline that stops training steps and forward passes within one batch.

torch is imported on first use, not with these modules.
"""
