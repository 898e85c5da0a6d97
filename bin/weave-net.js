#!/usr/bin/env node
// The weave-net CNI plugin. All logic is in the bundle (dist/cni/weave-cni.cjs); only bin/ exits.
import cni from '../dist/cni/weave-cni.cjs';

process.exit(await cni.runPlugin('net'));
