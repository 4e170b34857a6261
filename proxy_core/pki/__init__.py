"""streamtap's CA: making, rotating and exporting it, the client bundle, and installing
it into trust stores."""
