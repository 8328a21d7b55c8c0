"""Record shapes of the clickstream topics and how raw records become typed events."""
