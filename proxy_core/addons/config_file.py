"""ConfigFile: `--set streamtap_config=FILE` applies a streamtap YAML file under mitmdump.

Options given explicitly on the command line win over the file.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions

logger = logging.getLogger(__name__)


class ConfigFile:
    def load(self, loader) -> None:
        loader.add_option("streamtap_config", str, "", "streamtap YAML configuration file to apply.")

    def configure(self, updated: set[str]) -> None:
        if "streamtap_config" not in updated or not ctx.options.streamtap_config:
            return
        from ..config import ConfigError, load_config  # config imports the addons

        try:
            options = load_config(ctx.options.streamtap_config).to_options()
        except ConfigError as e:
            raise exceptions.OptionsError(f"streamtap_config: {e}") from None
        unset = {k: v for k, v in options.items() if k in ctx.options and not ctx.options.has_changed(k)}
        ctx.options.update(**unset)
        logger.info(f"streamtap: applied {ctx.options.streamtap_config}")
