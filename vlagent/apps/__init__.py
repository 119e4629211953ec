"""Small sample applications that vlagent's tests, benchmarks and scenarios drive.

Each app reports its state in a machine-readable file so that a check can prove that an
action really changed the application, instead of trusting what a model says it did.
"""
