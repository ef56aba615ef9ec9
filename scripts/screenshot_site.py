"""Screenshots of the rendered labs in a real browser (headless Chromium), to read them as a
student would: figures legible, no traceback, no warning storm.

    python -m labkit render --profile cpu --out site/
    python scripts/screenshot_site.py site/ --out shots/          # shots/<lab>-<part>.png

Needs Chromium (Debian: ``apt-get install chromium``). Each page is taken at 1280 px wide and
cut into parts of 2,000 px, the height a screen shows in two or three scrolls.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH, PART, MAX_HEIGHT = 1280, 2000, 60000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("site", help="the folder `python -m labkit render` wrote")
    parser.add_argument("--out", default="shots")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        sys.exit("no Chromium found; install it (Debian: apt-get install chromium)")
    from PIL import Image, ImageChops

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for page in sorted(Path(args.site).glob("*.html")):
        with tempfile.TemporaryDirectory() as tmp:
            shot = Path(tmp) / "page.png"
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--window-size={WIDTH},{MAX_HEIGHT}", f"--screenshot={shot}", page.resolve().as_uri()],
                           capture_output=True, timeout=300, check=True)
            image = Image.open(shot).convert("RGB")
            background = Image.new("RGB", image.size, image.getpixel((image.width - 1, image.height - 1)))
            box = ImageChops.difference(image, background).getbbox()
            image = image.crop((0, 0, WIDTH, box[3] + 20 if box else image.height))
            parts = range(0, image.height, PART)
            for k, top in enumerate(parts):
                image.crop((0, top, WIDTH, min(top + PART, image.height))).save(out / f"{page.stem}-{k:02d}.png")
        print(f"{page.name}: {image.height} px, {len(parts)} parts")


if __name__ == "__main__":
    main()
