"""Page CSS that keeps the first screen short and the page readable on a phone (issue #24).

* Desktop: the tab bar must show on a 900 px high screen, so the pair's cards are capped in height and
  the page starts higher.
* While a new pair is explained, the old cards and summary grey out at once.
* Phone (up to 640 px): display equations wrap at their relations and operators instead of running off
  the screen; Plotly's toolbar, which covered the chart legends, is hidden (pinch-zoom works); the A and
  B headings take the same height, so the two images start level when one class name wraps; the
  introduction paragraph (the "Start here" line stays), the suggestion hint and the gaps between the
  stacked columns go, and the pair's buttons and metrics stay two abreast, so the tabs start sooner.
"""

from __future__ import annotations

import streamlit as st

__all__ = ["CSS", "inject"]

CSS = """<style>
.block-container {padding-top: 1.2rem !important;}
.st-key-pair_ab [data-testid="stImage"] img {max-height: 170px; width: auto !important; max-width: 100%;}
/* the pair's selectors: a little smaller text, so the longest "id · class" labels fit unclipped */
.st-key-pair_ab [role="combobox"] {font-size: .86rem;}
/* while a new pair is explained, the old cards and summary grey out at once (not after a second) */
.st-key-pair_ab [data-stale="true"], .st-key-pair_summary [data-stale="true"] {opacity: .2 !important;
  transition: none !important;}
@media (max-width: 640px) {
  .block-container {padding-top: 3rem !important;}
  .katex-display > .katex {white-space: normal !important; text-align: left;}
  .katex-display > .katex > .katex-html {white-space: normal !important;}
  .katex-display .base {margin: .12em 0;}
  .katex-display {overflow-x: visible !important;}
  .js-plotly-plot .modebar-container {display: none !important;}
  .st-key-pair_ab [data-testid="stMarkdownContainer"] p:has(.apinet-tag) {min-height: 3.3em;}
  .st-key-pair_ab [data-testid="stImage"] img {max-height: 150px;}
  .st-key-pair_actions [data-testid="stHorizontalBlock"], .st-key-pair_summary [data-testid="stHorizontalBlock"]
    {flex-wrap: nowrap !important; gap: .5rem;}
  .st-key-pair_actions [data-testid="stColumn"], .st-key-pair_summary [data-testid="stColumn"]
    {min-width: 0 !important; width: auto !important; flex: 1 1 0 !important;}
  .st-key-pair_actions [data-testid="stElementContainer"]:has([data-testid="stCaptionContainer"]) {display: none;}
  .st-key-page_intro [data-testid="stElementContainer"]:has([data-testid="stMarkdown"]) {display: none;}
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] .st-key-pair_ab) {gap: .9rem !important;}
  [data-testid="stMetricValue"] {font-size: 1.5rem !important;}
  h1 {font-size: 1.5rem !important;}
}
</style>"""


def inject() -> None:
    st.html(CSS)
