"""streamtap as a mitmproxy script:

    mitmdump -s addons/stream_capture.py --set streamtap_api_socket=run/streamtap.sock

Options: `mitmdump -s addons/stream_capture.py --options | grep streamtap_`.
"""

from proxy_core.mitm import default_addons
from proxy_core.mitm.contentview import register

register()  # the "streamtap" contentview, for mitmproxy and mitmweb
addons = default_addons(standalone=True)
