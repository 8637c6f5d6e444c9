"""Cloud providers behind one narrow interface (see ``base.CloudProvider``)."""
