# Emulation of cuda/attention.cu's tensor-core kernels (fwd_tc_kernel, bwd_tc_kernel) on the
# CPU, in float64: the kernels' index arithmetic transcribed line by line (per warp, per lane),
# with mma.sync.m16n8k16 emulated from the fragment layouts of the PTX ISA. It checks the
# bookkeeping (fragment loads, C->A register reuse, masks, varlen, GQA, head-dim padding,
# both BR tile heights) against a float64 reference where no GPU is at hand:
#
#   /usr/bin/python3 native/tests/attention_tc_emulation.py      (numpy; ~20 s)
#
# It does not model bf16/f16 rounding, timing or synchronization; the GPU tests
# (native/tests/test_attention.cpp, bench/gpu_attention.py) do the real check on a GPU.
# Keep it in step with the kernels when their tiling changes.
import numpy as np, math
NEG=-np.inf

def mma(c, a, b):
    # c: [32][4], a: [32][4] of (lo,hi), b: [32][2] of (lo,hi)
    A=np.zeros((16,16)); B=np.zeros((16,8)); C=np.zeros((16,8))
    for lane in range(32):
        g,t=lane//4,lane%4
        A[g][2*t],A[g][2*t+1]=a[lane][0]; A[g+8][2*t],A[g+8][2*t+1]=a[lane][1]
        A[g][2*t+8],A[g][2*t+9]=a[lane][2]; A[g+8][2*t+8],A[g+8][2*t+9]=a[lane][3]
        B[2*t][g],B[2*t+1][g]=b[lane][0]; B[2*t+8][g],B[2*t+9][g]=b[lane][1]
        C[g][2*t],C[g][2*t+1],C[g+8][2*t],C[g+8][2*t+1]=c[lane]
    Dm=A@B+C
    for lane in range(32):
        g,t=lane//4,lane%4
        c[lane]=[Dm[g][2*t],Dm[g][2*t+1],Dm[g+8][2*t],Dm[g+8][2*t+1]]

def ld32(arr, i): return (arr[i], arr[i+1])

def ldsm_b_pair(arr, base, lds):
    # ldmatrix.sync.aligned.m8n8.x4.trans.b16: lanes 8m..8m+7 give the row addresses of matrix m;
    # with .trans, lane (g, t) receives (M[2t][g], M[2t+1][g]) of each matrix m into register m.
    mats=[]
    for m in range(4):
        rows=[base+((m&1)*8+r)*lds+(m>>1)*8 for r in range(8)]   # lanes 8m+r
        mats.append([[arr[rows[r]+c] for c in range(8)] for r in range(8)])
    b0=[];b1=[]
    for lane in range(32):
        g,t=lane>>2,lane&3
        regs=[(mats[m][2*t][g],mats[m][2*t+1][g]) for m in range(4)]
        b0.append([regs[0],regs[1]]); b1.append([regs[2],regs[3]])
    return b0,b1

def fwd_tc(p, DP, q, k, v, out, lse):
    BR=BC=64; LDS=DP+8
    for b in range(p['batch']):
      for h in range(p['H']):
        qbeg=p['cuq'][b]; Tq=p['cuq'][b+1]-qbeg; kbeg=p['cuk'][b]; Tk=p['cuk'][b+1]-kbeg
        for tile in range((max(1,p['maxq'])+BR-1)//BR):
          q0=tile*BR
          if q0>=Tq: continue
          hk=h//p['G']; off=Tk-Tq; D=p['D']
          sQ=np.zeros(BR*LDS); sK=np.zeros(BC*LDS); sV=np.zeros(BC*LDS)
          for r in range(BR):
            for d in range(DP):
              sQ[r*LDS+d]= q[(qbeg+q0+r)*p['ldq']+h*D+d] if (q0+r<Tq and d<D) else 0
          kend=min(Tk,q0+BR+off) if p['causal'] else Tk
          # per warp, per lane state
          o=np.zeros((4,32,DP//8,4)); m=np.full((4,32,2),NEG); l=np.zeros((4,32,2))
          k0=0
          while k0<kend:
            for r in range(BC):
              for d in range(DP):
                ok=k0+r<Tk and d<D
                at=(kbeg+k0+r)*p['ldk']+hk*D+d
                sK[r*LDS+d]=k[at] if ok else 0; sV[r*LDS+d]=v[at] if ok else 0
            for warp in range(4):
              s=[[[0.0]*4 for _ in range(32)] for _ in range(BC//8)]
              for kc in range(DP//16):
                a=[]
                for lane in range(32):
                  g,t4=lane>>2,lane&3
                  qa=(warp*16+g)*LDS+kc*16+t4*2
                  a.append([ld32(sQ,qa),ld32(sQ,qa+8*LDS),ld32(sQ,qa+8),ld32(sQ,qa+8*LDS+8)])
                for nt in range(BC//8):
                  bb=[]
                  for lane in range(32):
                    g,t4=lane>>2,lane&3
                    kb=(nt*8+g)*LDS+kc*16+t4*2
                    bb.append([ld32(sK,kb),ld32(sK,kb+8)])
                  cc=[list(s[nt][lane]) for lane in range(32)]
                  mma(cc,a,bb)
                  for lane in range(32): s[nt][lane]=cc[lane]
              tmax=np.full((32,2),NEG)
              for lane in range(32):
                g,t4=lane>>2,lane&3
                r_lo=q0+warp*16+g; r_hi=r_lo+8
                for nt in range(BC//8):
                  for e in range(4):
                    key=k0+nt*8+t4*2+(e&1); row=r_lo if e<2 else r_hi
                    ok=key<Tk and ((not p['causal']) or key<=row+off)
                    s[nt][lane][e]= s[nt][lane][e]*p['scale_log2'] if ok else NEG
                    tmax[lane][e>>1]=max(tmax[lane][e>>1],s[nt][lane][e])
              # quad max
              qm=np.zeros((32,2))
              for lane in range(32):
                base=lane&~3
                qm[lane]=np.max(tmax[base:base+4],axis=0)
              msafe=np.zeros((32,2)); alpha=np.zeros((32,2))
              for lane in range(32):
                for r in range(2):
                  mn=max(m[warp][lane][r],qm[lane][r])
                  msafe[lane][r]=0.0 if mn==NEG else mn
                  alpha[lane][r]=2.0**(m[warp][lane][r]-msafe[lane][r]) if m[warp][lane][r]!=NEG else 0.0
                  m[warp][lane][r]=mn; l[warp][lane][r]*=alpha[lane][r]
              for lane in range(32):
                for nt in range(BC//8):
                  for e in range(4):
                    x=s[nt][lane][e]-msafe[lane][e>>1]
                    s[nt][lane][e]=0.0 if x==NEG else 2.0**x
                    l[warp][lane][e>>1]+=s[nt][lane][e]
                for dn in range(DP//8):
                  o[warp][lane][dn][0]*=alpha[lane][0]; o[warp][lane][dn][1]*=alpha[lane][0]
                  o[warp][lane][dn][2]*=alpha[lane][1]; o[warp][lane][dn][3]*=alpha[lane][1]
              for kc in range(BC//16):
                a=[[(s[2*kc][lane][0],s[2*kc][lane][1]),(s[2*kc][lane][2],s[2*kc][lane][3]),(s[2*kc+1][lane][0],s[2*kc+1][lane][1]),(s[2*kc+1][lane][2],s[2*kc+1][lane][3])] for lane in range(32)]
                for dn in range(0,DP//8,2):
                  b0,b1=ldsm_b_pair(sV,kc*16*LDS+dn*8,LDS)
                  for x,bb in ((0,b0),(1,b1)):
                    cc=[list(o[warp][lane][dn+x]) for lane in range(32)]
                    mma(cc,a,bb)
                    for lane in range(32): o[warp][lane][dn+x]=cc[lane]
            k0+=BC
          for warp in range(4):
            for lane in range(32):
              g,t4=lane>>2,lane&3
              r_lo=q0+warp*16+g; r_hi=r_lo+8
              for r in range(2):
                row=r_hi if r else r_lo
                base=lane&~3
                lr=sum(l[warp][bl][r] for bl in range(base,base+4))
                if row>=Tq: continue
                inv=1/lr if lr>0 else 0
                for dn in range(DP//8):
                  d=dn*8+t4*2
                  if d<D: out[(qbeg+row)*p['ldq']+h*D+d]=o[warp][lane][dn][2*r]*inv
                  if d+1<D: out[(qbeg+row)*p['ldq']+h*D+d+1]=o[warp][lane][dn][2*r+1]*inv
                if t4==0: lse[h*p['total_q']+qbeg+row]=(m[warp][lane][r]+math.log2(lr))*math.log(2) if lr>0 else NEG

def bwd_tc(p, DP, BR, q, k, v, dout, lse, delta, dq_acc, dk, dv):
    BC=64; LDS=DP+8; LDSS=BC+8; RT=BR//16; CS=4//RT; log2e=1/math.log(2)
    for b in range(p['batch']):
      for hk in range(p['Hkv']):
        qbeg=p['cuq'][b]; Tq=p['cuq'][b+1]-qbeg; kbeg=p['cuk'][b]; Tk=p['cuk'][b+1]-kbeg
        for tile in range((max(1,p['maxk'])+BC-1)//BC):
          k0=tile*BC
          if k0>=Tk: continue
          off=Tk-Tq; D=p['D']
          sK=np.zeros(BC*LDS); sV=np.zeros(BC*LDS); sQ=np.zeros(BR*LDS); sdO=np.zeros(BR*LDS); sdS=np.zeros(BR*LDSS); sL=np.zeros(BR); sDl=np.zeros(BR)
          for r in range(BC):
            for d in range(DP):
              ok=k0+r<Tk and d<D; at=(kbeg+k0+r)*p['ldk']+hk*D+d
              sK[r*LDS+d]=k[at] if ok else 0; sV[r*LDS+d]=v[at] if ok else 0
          dK=np.zeros((4,32,DP//8,4)); dV=np.zeros((4,32,DP//8,4))
          q_lo=max(0,k0-off) if p['causal'] else 0
          for gi in range(p['G']):
            h=hk*p['G']+gi
            qs=q_lo
            while qs<Tq:
              for r in range(BR):
                for d in range(DP):
                  ok=qs+r<Tq and d<D; at=(qbeg+qs+r)*p['ldq']+h*D+d
                  sQ[r*LDS+d]=q[at] if ok else 0; sdO[r*LDS+d]=dout[at] if ok else 0
              for r in range(BR):
                ok=qs+r<Tq
                lv=lse[h*p['total_q']+qbeg+qs+r] if ok else NEG
                sL[r]=np.inf if lv==NEG else lv*log2e
                sDl[r]=delta[h*p['total_q']+qbeg+qs+r] if ok else 0
              for warp in range(4):
                st=[[[0.0]*4 for _ in range(32)] for _ in range(BR//8)]
                dpt=[[[0.0]*4 for _ in range(32)] for _ in range(BR//8)]
                for kc in range(DP//16):
                  ak=[];av=[]
                  for lane in range(32):
                    g,t4=lane>>2,lane&3
                    ka=(warp*16+g)*LDS+kc*16+t4*2
                    ak.append([ld32(sK,ka),ld32(sK,ka+8*LDS),ld32(sK,ka+8),ld32(sK,ka+8*LDS+8)])
                    av.append([ld32(sV,ka),ld32(sV,ka+8*LDS),ld32(sV,ka+8),ld32(sV,ka+8*LDS+8)])
                  for nt in range(BR//8):
                    bq=[];bo=[]
                    for lane in range(32):
                      g,t4=lane>>2,lane&3
                      qb=(nt*8+g)*LDS+kc*16+t4*2
                      bq.append([ld32(sQ,qb),ld32(sQ,qb+8)]); bo.append([ld32(sdO,qb),ld32(sdO,qb+8)])
                    cc=[list(st[nt][l_]) for l_ in range(32)]; mma(cc,ak,bq)
                    for l_ in range(32): st[nt][l_]=cc[l_]
                    cc=[list(dpt[nt][l_]) for l_ in range(32)]; mma(cc,av,bo)
                    for l_ in range(32): dpt[nt][l_]=cc[l_]
                for lane in range(32):
                  g,t4=lane>>2,lane&3
                  key_lo=k0+warp*16+g; key_hi=key_lo+8
                  for nt in range(BR//8):
                    for e in range(4):
                      ql=nt*8+t4*2+(e&1); qq=qs+ql; key=key_lo if e<2 else key_hi
                      ok=key<Tk and qq<Tq and ((not p['causal']) or key<=qq+off)
                      pt=2.0**(st[nt][lane][e]*p['scale_log2']-sL[ql]) if ok and sL[ql]!=np.inf else 0.0
                      st[nt][lane][e]=pt; dpt[nt][lane][e]=pt*(dpt[nt][lane][e]-sDl[ql])*p['scale']
                for kc in range(BR//16):
                  ap=[[(st[2*kc][l_][0],st[2*kc][l_][1]),(st[2*kc][l_][2],st[2*kc][l_][3]),(st[2*kc+1][l_][0],st[2*kc+1][l_][1]),(st[2*kc+1][l_][2],st[2*kc+1][l_][3])] for l_ in range(32)]
                  As=[[(dpt[2*kc][l_][0],dpt[2*kc][l_][1]),(dpt[2*kc][l_][2],dpt[2*kc][l_][3]),(dpt[2*kc+1][l_][0],dpt[2*kc+1][l_][1]),(dpt[2*kc+1][l_][2],dpt[2*kc+1][l_][3])] for l_ in range(32)]
                  for dn in range(0,DP//8,2):
                    bo0,bo1=ldsm_b_pair(sdO,kc*16*LDS+dn*8,LDS)
                    bq0,bq1=ldsm_b_pair(sQ,kc*16*LDS+dn*8,LDS)
                    for x,bo,bq in ((0,bo0,bq0),(1,bo1,bq1)):
                      cc=[list(dV[warp][l_][dn+x]) for l_ in range(32)]; mma(cc,ap,bo)
                      for l_ in range(32): dV[warp][l_][dn+x]=cc[l_]
                      cc=[list(dK[warp][l_][dn+x]) for l_ in range(32)]; mma(cc,As,bq)
                      for l_ in range(32): dK[warp][l_][dn+x]=cc[l_]
                for lane in range(32):
                  g,t4=lane>>2,lane&3
                  for nt in range(BR//8):
                    for e in range(4):
                      ql=nt*8+t4*2+(e&1); kl=warp*16+g+(0 if e<2 else 8)
                      sdS[ql*LDSS+kl]=dpt[nt][lane][e]
              # __syncthreads; dQ
              for warp in range(4):
                rt=warp%RT; cs=warp//RT; NDN=DP//8//CS
                for j in range(0,NDN,2):
                  dn=cs*NDN+j
                  acc=[[[0.0]*4 for _ in range(32)] for _ in range(2)]
                  for kc in range(BC//16):
                    a=[]
                    for lane in range(32):
                      g,t4=lane>>2,lane&3
                      sa=(rt*16+g)*LDSS+kc*16+t4*2
                      a.append([ld32(sdS,sa),ld32(sdS,sa+8*LDSS),ld32(sdS,sa+8),ld32(sdS,sa+8*LDSS+8)])
                    b0,b1=ldsm_b_pair(sK,kc*16*LDS+dn*8,LDS)
                    mma(acc[0],a,b0); mma(acc[1],a,b1)
                  for x in range(2):
                    for lane in range(32):
                      g,t4=lane>>2,lane&3
                      for e in range(4):
                        ql=rt*16+g+(0 if e<2 else 8); d=(dn+x)*8+t4*2+(e&1)
                        if qs+ql<Tq and d<D: dq_acc[(qbeg+qs+ql)*p['ldq']+h*D+d]+=acc[x][lane][e]
              qs+=BR
          for warp in range(4):
            for lane in range(32):
              g,t4=lane>>2,lane&3
              for r in range(2):
                key=k0+warp*16+g+(8 if r else 0)
                if key>=Tk: continue
                for dn in range(DP//8):
                  for c in range(2):
                    d=dn*8+t4*2+c
                    if d<D:
                      dk[(kbeg+key)*p['ldk']+hk*D+d]=dK[warp][lane][dn][2*r+c]
                      dv[(kbeg+key)*p['ldk']+hk*D+d]=dV[warp][lane][dn][2*r+c]

def reference(p, q, k, v, dout):
    H,Hkv,D,G=p['H'],p['Hkv'],p['D'],p['G']; sc=p['scale']
    tq,tk=p['total_q'],p['cuk'][-1]
    Q=q.reshape(tq,H,D); K=k.reshape(tk,Hkv,D); V=v.reshape(tk,Hkv,D); dO=dout.reshape(tq,H,D)
    out=np.zeros((tq,H,D)); lse=np.full((H,tq),NEG); dq=np.zeros((tq,H,D)); dk=np.zeros((tk,Hkv,D)); dv=np.zeros((tk,Hkv,D))
    for b in range(p['batch']):
        q0,q1,k0,k1=p['cuq'][b],p['cuq'][b+1],p['cuk'][b],p['cuk'][b+1]; Tq,Tk=q1-q0,k1-k0
        for h in range(H):
            hk=h//G
            S=Q[q0:q1,h]@K[k0:k1,hk].T*sc
            if p['causal']:
                for i in range(Tq):
                    S[i, max(0,i+Tk-Tq+1):]=NEG
            with np.errstate(invalid='ignore'):
                mx=np.max(S,axis=1,keepdims=True) if Tk>0 else np.full((Tq,1),NEG)
                ms=np.where(np.isinf(mx),0,mx); P=np.exp(S-ms); l=P.sum(1,keepdims=True)
                P=np.where(l>0,P/np.where(l>0,l,1),0)
            out[q0:q1,h]=P@V[k0:k1,hk]
            lse[h,q0:q1]=np.where(l[:,0]>0,(ms[:,0]+np.log(np.where(l[:,0]>0,l[:,0],1))),NEG)
            dP=dO[q0:q1,h]@V[k0:k1,hk].T; Dl=(P*dP).sum(1,keepdims=True); dS=P*(dP-Dl)*sc
            dq[q0:q1,h]+=dS@K[k0:k1,hk]; dk[k0:k1,hk]+=dS.T@Q[q0:q1,h]; dv[k0:k1,hk]+=P.T@dO[q0:q1,h]
    return out.ravel(),lse.ravel(),dq.ravel(),dk.ravel(),dv.ravel()

def run(lq, lk, H, Hkv, D, causal, DP, seed=0):
    rng=np.random.default_rng(seed)
    cuq=np.concatenate([[0],np.cumsum(lq)]).astype(int); cuk=np.concatenate([[0],np.cumsum(lk)]).astype(int)
    tq,tk=cuq[-1],cuk[-1]
    q=rng.uniform(-1,1,tq*H*D); k=rng.uniform(-1,1,tk*Hkv*D); v=rng.uniform(-1,1,tk*Hkv*D); dout=rng.uniform(-1,1,tq*H*D)
    sc=1/math.sqrt(D)
    p=dict(batch=len(lq),H=H,Hkv=Hkv,G=H//Hkv,D=D,cuq=list(cuq),cuk=list(cuk),ldq=H*D,ldk=Hkv*D,total_q=tq,scale=sc,scale_log2=sc/math.log(2),causal=causal,maxq=max(lq),maxk=max(lk))
    out=np.full(tq*H*D,np.nan); lse=np.full(H*tq,np.nan)
    fwd_tc(p,DP,q,k,v,out,lse)
    ro,rl,rdq,rdk,rdv=reference(p,q,k,v,dout)
    def rel(a,b): return np.linalg.norm(a-b)/max(np.linalg.norm(b),1e-300)
    fin=np.isfinite(rl)
    print(f"lq={lq} lk={lk} H={H} Hkv={Hkv} D={D} DP={DP} causal={causal}: out {rel(out,ro):.2e} lse {rel(lse[fin],rl[fin]):.2e} lse-inf-match {np.array_equal(np.isinf(lse),np.isinf(rl))}", end='')
    delta=(dout.reshape(tq,H,D)*out.reshape(tq,H,D)).sum(-1).T.ravel()
    BR=64 if DP<=64 else 32
    dq_acc=np.zeros(tq*H*D); dk=np.full(tk*Hkv*D,np.nan); dv=np.full(tk*Hkv*D,np.nan)
    bwd_tc(p,DP,BR,q,k,v,dout,lse,delta,dq_acc,dk,dv)
    print(f" dq {rel(dq_acc,rdq):.2e} dk {rel(dk,rdk):.2e} dv {rel(dv,rdv):.2e}")
    errs=[rel(out,ro),rel(lse[fin],rl[fin]),rel(dq_acc,rdq),rel(dk,rdk),rel(dv,rdv)]
    return max(errs)<1e-12 and np.array_equal(np.isinf(lse),np.isinf(rl))

ok = True
ok &= run([5,70,0,3],[9,66,4,0],H=2,Hkv=1,D=16,causal=True,DP=32)
ok &= run([5,70,0,3],[9,66,4,0],H=2,Hkv=1,D=16,causal=False,DP=32)
ok &= run([80],[80],H=1,Hkv=1,D=40,causal=True,DP=64)
ok &= run([33],[20],H=2,Hkv=2,D=72,causal=True,DP=128)
print("emulation matches the float64 reference" if ok else "MISMATCH")
raise SystemExit(0 if ok else 1)
