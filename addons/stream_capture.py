"""streamtap as a mitmproxy script:

    mitmdump -s addons/stream_capture.py --set streamtap_api_socket=run/streamtap.sock

Options: `mitmdump -s addons/stream_capture.py --options | grep streamtap_`.
"""

from proxy_core.addons import default_addons

addons = default_addons()
