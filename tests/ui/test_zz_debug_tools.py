from typing import Any
import pytest
from tests.ui.test_browser_tools import *  # noqa
from tests.ui.test_browser_tools import tools_stack, tab  # noqa

def test_debug(tab: Any, tools_stack: Any) -> None:
    open_app(tab, tools_stack)
    send(tab, ASK_TIME)
    card = approval_card(tab)
    expect(card).to_be_visible(timeout=LONG)
    print("LISTENING", tab.evaluate("window.csApprovalListening"))
    print("HTML", card.evaluate("e => e.outerHTML.replace(/\\n/g, \" \")"))
    print("BRIDGE", tab.evaluate("document.querySelector('#cs-approvals') && document.querySelector('#cs-approvals').outerHTML"))
    print("TOOLS", tab.evaluate("document.querySelector('#cs-tools').outerHTML.slice(0, 300)"))
