// ICE gathering, shared by the data channel transport and the SFU (both send complete offers).

/** The most a client waits for ICE gathering before it sends an offer anyway (ms). */
const ICE_GATHER_MS = 2000;

/** Resolves once `pc` has gathered its ICE candidates, or after ICE_GATHER_MS (on the client's clock). */
export function iceGathered(pc, client) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    let timer = null;
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const done = () => {
      client._clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve(undefined);
    };
    pc.addEventListener('icegatheringstatechange', check);
    timer = client._setTimeout(done, ICE_GATHER_MS);
  });
}
