"""Write docs/faithfulness.md from the methods' own `faithfulness` declarations."""
from pathlib import Path

from tunesift.methods import available_methods
from tunesift.methods.faithfulness import render_markdown

out = Path(__file__).resolve().parent.parent / "docs" / "faithfulness.md"
out.write_text(render_markdown(available_methods().values()))
print(f"wrote {out}")
