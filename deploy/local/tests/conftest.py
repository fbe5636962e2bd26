import sys
from pathlib import Path

# pytest's import mode leaves this directory off sys.path; the shared helpers live here.
sys.path.insert(0, str(Path(__file__).parent))
