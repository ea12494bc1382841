"""The project's tests: unit tests by package (unit/<package>), tests against real servers and the vendors'
own clients (contract), runs through the real engine (engine), the money, hostile-input and secret suites
(scenarios), and the house rules (house)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The project's directory."""
